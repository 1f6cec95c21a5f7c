"""`python -m tests.chaos` (what `make chaos` runs)."""
import sys

from tests.chaos.run import main

sys.exit(main())
