"""The project's tooling: the local stacks (scripts/stack, a Python package), the virtualenv and the
system dependencies (bash)."""
