"""What every process shares: settings, connections, logs, metrics, the outbox and the consumers' loop."""
