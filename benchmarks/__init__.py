"""Benchmarks of the fast backend (issue 4): `benchmarks.bench.main` is what `python cli.py bench` runs."""
