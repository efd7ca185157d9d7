"""Observing requests: Prometheus metrics, the access log and provider stats, as listeners."""
