"""The cache worker: applies the event stream from Kafka to the Redis leaderboards and rooms."""
