"""Runnable examples: the digits task used by the demo, tests and benchmarks."""
