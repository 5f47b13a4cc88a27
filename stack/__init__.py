"""Local platform plumbing: the single-node Kafka broker, topic declarations, `make up`."""
