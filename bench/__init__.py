"""Benchmarks against real peers, side by side in one run (``python -m bench``).

Every figure is measured against a peer in the same run: Pebble for ACME, micromdm's
scepserver for SCEP, and the machine's own crypto ceiling for both. See README.md.
"""
