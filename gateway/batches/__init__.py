"""The OpenAI Files and Batches APIs, run by the gateway itself across its replicas.

``records`` (typed file and batch records), ``settings`` (GATEWAY_FILES_* / GATEWAY_BATCH_*),
``storage`` (file bytes: a local directory or S3), ``catalog`` (records in the store),
``jsonl`` (batch input validation), ``files`` (uploads and quotas), ``state`` (per-line
progress: a Redis Streams consumer group, or process memory), ``runner`` (executes lines
through the gateway's pipeline), ``service`` (the facade the HTTP endpoints use).
"""
