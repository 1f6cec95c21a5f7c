"""`python -m score_ingest`: the score ingest process (score_ingest/process.py)."""
import sys

from score_ingest.process import main

if __name__ == "__main__":
    sys.exit(main())
