"""`python -m cache_worker`: the cache worker process (cache_worker/process.py)."""
import sys

from cache_worker.process import main

if __name__ == "__main__":
    sys.exit(main())
