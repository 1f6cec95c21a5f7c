"""Pure rules of the quiz: no I/O."""
