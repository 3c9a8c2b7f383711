"""The Pulumi program: Batch account, Storage account and containers, and the pool.

``__main__.py`` is the program ``pulumi up`` runs; ``config`` validates the stack's
configuration into the component's typed args (with ``reader``, ``network_config``
and ``vm_sizes``), ``environment`` declares the resources as one component (with
``network`` for private networking, ``diagnostics`` for Log Analytics, ``roles`` for
role assignments), ``pool`` maps the shared :class:`runner.pool_spec.PoolSpec` onto
the Batch management API. Importing this package creates no resource.
"""
