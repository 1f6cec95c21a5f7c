"""Use cases, one transaction each; the only code that writes the outbox."""
