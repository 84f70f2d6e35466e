"""The durable queue between collector and loader: the embedded log and Kafka."""
