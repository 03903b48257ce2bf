"""Benchmarks (see bench/README.md); scripts, not a library."""
