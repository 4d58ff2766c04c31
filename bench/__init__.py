"""Benchmarks: each module prints its figures beside a baseline measured in the same run.

Run one from the repository root as a script (``.venv/bin/python bench/ledger.py``) or as a
module (``.venv/bin/python -m bench.ledger``).
"""
