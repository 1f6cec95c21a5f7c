"""The quiz's use cases, one transaction each; with the leaderboards' service, the only code that writes
the outbox."""
