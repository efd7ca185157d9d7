"""Client endpoints that are not proxied: models, quota, usage, files, batches, videos."""
