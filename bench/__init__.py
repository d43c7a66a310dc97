"""Benchmarks: pluggable suites, timing harness and the results report (``python -m bench``)."""
