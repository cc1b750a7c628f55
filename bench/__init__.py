"""Benchmarks: each module prints its figure next to a baseline measured in the same run.
``python -m bench.run_all`` runs them all and writes bench/RESULTS.md."""
