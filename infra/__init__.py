"""The Pulumi program: Batch account, Storage account and containers, and the pool.

``__main__.py`` is the program ``pulumi up`` runs; ``config`` validates the stack's
configuration, ``environment`` declares the resources as one component, ``pool``
maps the shared :class:`runner.pool_spec.PoolSpec` onto the Batch management API.
Importing this package creates no resource.
"""
