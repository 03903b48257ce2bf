"""Benchmarks (see bench/README.md): each runs as `.venv/bin/python -m bench.<name>`; an
installed package (pyproject.toml), so neither they nor their subprocesses edit sys.path."""
