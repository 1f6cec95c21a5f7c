"""`python -m outbox_relay`: the relay process (outbox_relay/process.py)."""
import sys

from outbox_relay.process import main

if __name__ == "__main__":
    sys.exit(main())
