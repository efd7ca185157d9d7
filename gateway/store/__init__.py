"""The store: one interface (``port.Store``) over an in-memory and a Redis backend.

Metering, the control plane, the ledger's shipper, the cache and video jobs keep their state here.
``factory.create_store(url, settings)`` picks the backend.
"""
