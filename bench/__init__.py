"""Benchmarks of hms-mgmt: `python -m bench [GROUP ...]` measures, prints a table and updates results.json."""
