"""The admin API: its route table, roles, and one module per kind of run-time entity."""
