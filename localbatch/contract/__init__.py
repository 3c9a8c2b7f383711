"""The Batch data-plane contract, derived from the installed SDK, and a checker for responses.

``spec`` derives models, enums and operations from the azure-batch SDK's
source; ``check`` validates one response against them; ``middleware`` wires
the check into localbatch's aiohttp app (``serve --check-contract FILE``).
"""
