"""Kafka (confluent-kafka): client configuration, emitter, consumer (group, commit after store), status."""
