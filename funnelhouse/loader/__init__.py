"""Drains the queue (embedded log or Kafka) into the warehouse, exactly once."""
