"""The outbox relay process: `python -m outbox_relay` (see `outbox_relay.relay`)."""
