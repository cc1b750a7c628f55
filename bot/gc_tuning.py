"""Garbage-collector settings for a long-running process with many jobs in flight.

Every job allocates thousands of short-lived objects (HTTP frames, JSON, rows, futures); with the
default gen-0 threshold (700) the collector runs every few hundred allocations and, as jobs in
flight grow, each young collection also walks more survivors. After start-up nearly every object
the process will ever keep (modules, the catalog, settings, compiled SQL) already exists:
``gc.freeze()`` moves them out of the collector's sight for good, and a higher gen-0 threshold
collects young objects in fewer, larger passes. Reference counting frees almost everything anyway;
the collector only finds cycles, which still happen, just less often checked.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000  # default 700
GEN1_THRESHOLD = 20  # default 10
GEN2_THRESHOLD = 20  # default 10


def tune_gc() -> None:
    """Freeze what start-up made and raise the thresholds (the process entry calls it once)."""
    gc.collect()  # start-up's garbage goes first, so freezing keeps only what is alive
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)


def untune_gc() -> None:
    """Back to Python's defaults (the benchmarks compare both in one process)."""
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
