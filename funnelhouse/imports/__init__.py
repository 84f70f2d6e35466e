"""`funnelhouse import`: events from files (history, CRM exports, offline store purchases),
read row by row (readers), turned into messages by a column mapping (mapping, values) and
sent through the collector's one ingest path (senders), reported line by line (run)."""
