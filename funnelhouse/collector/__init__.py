"""The ingest edge: HTTP API, tracking-plan validation, enrichment, durable enqueue."""
