"""The narrow warehouse interface and its two backends (embedded chdb, ClickHouse server)."""
