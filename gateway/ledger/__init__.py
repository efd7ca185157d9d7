"""The durable usage ledger in PostgreSQL: migrations, the stream shipper, reads."""
