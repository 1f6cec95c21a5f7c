"""How the API fuzzer (test_fuzz.py) puts real values in place of generated ones (fuzz_world.py,
fuzz_boards.py): most times, not always, so some requests keep their random values."""
from __future__ import annotations

import random
import re
from typing import Any

# How often a request keeps its generated (random) id instead of a real one.
RANDOM_ID_SHARE = 0.15


def put_real(rnd: random.Random, container: dict, name: str, value: Any,
         share: float = 1 - RANDOM_ID_SHARE) -> bool:
    """Put `value` in place of a generated string (a value of the documented type), most times; so a
    request generated to break the document still does."""
    if isinstance(container.get(name), str) and rnd.random() < share:
        container[name] = value
        return True
    return False


def integer_within(value: Any, low: int, high: int) -> bool:
    """Whether `value` is an integer within low..high; in a query, also as the text of one (the
    coverage phase sends query values as text)."""
    if isinstance(value, str) and re.fullmatch(r"[1-9][0-9]{0,15}|0", value):
        value = int(value)
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
