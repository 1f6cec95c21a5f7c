"""The benchmarks are never collected by `make test` (they are measurements), so a module of theirs
that no longer imports would only show at the next `make bench`: each one is imported here."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("name", sorted(p.stem for p in BENCH.glob("*.py") if p.stem != "__init__"))
def test_each_benchmark_module_imports(name: str):
    module = importlib.import_module(f"tests.bench.{name}")
    assert module.__name__ == f"tests.bench.{name}"
