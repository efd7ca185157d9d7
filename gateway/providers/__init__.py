"""The upstream seam: one pooled transport, and each provider API spoken over it."""
