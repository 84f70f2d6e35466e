"""The SQL model runner that builds the eight tables."""
