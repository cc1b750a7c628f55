"""Run every benchmark, print one table (figure, baseline, ratio, target, met) and write
bench/RESULTS.md with the table, the notes behind each row and the machine it ran on.

    python -m bench.run_all [--only ledger,images] [--soak] [--out bench/RESULTS.md]

About fifteen minutes on a 2-core machine (reports builds a million jobs on each backend).
Rows marked "info" are context or experiments (a change
the bench simulates to show what a fix would buy); only "yes"/"NO" rows judge a target.
``--soak`` also runs bench/soak.py's ``run()`` when that module exists (it is optional).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

from bench import dispatch, images, ledger, loop_lag, memory, reports, workers
from bench.common import Result, load_average, machine_info, print_results, table

# Quiet, quick benchmarks first: the ledger figure is the most sensitive to a busy machine.
SECTIONS: dict[str, Callable[[], list[Result]]] = {
    "ledger": ledger.run,
    "images": images.run,
    "loop_lag": loop_lag.run,
    "memory": memory.run,
    "dispatch": dispatch.run,
    "workers": workers.run,  # dispatch over 1, 2 and 4 worker processes, SQLite and PostgreSQL
    "reports": reports.run,  # builds 1M jobs on both backends: the longest section
}
RESULTS = Path(__file__).with_name("RESULTS.md")


def _soak() -> Callable[[], list[Result]] | None:
    if importlib.util.find_spec("bench.soak") is None:
        return None
    run = getattr(importlib.import_module("bench.soak"), "run", None)
    return run if callable(run) else None


def write_markdown(
    path: Path, results: list[Result], timings: dict[str, float], total: float, loads: dict[str, str]
) -> None:
    info = machine_info()
    lines = [
        "# Benchmark results",
        "",
        f"`python -m bench.run_all` on {info['date']}: {total:.0f} s in all "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}).",
        "",
        f"- machine: {info['nproc']} CPUs, {info['cpu']}",
        f"- Python {info['python']} on {info['platform']}",
        "- load average (1 min) as each section started: "
        + ", ".join(f"{k} {v}" for k, v in loads.items())
        + " (other processes skew absolute figures; the side-by-side ratios less so)",
        "",
        "Ratio is figure / baseline. Rows marked *info* are context or experiments (a change the "
        "bench simulates to show what a fix would buy); only *yes*/*NO* rows judge a target. "
        "Each module's docstring says exactly what is measured and what the baseline is.",
        "",
        table(results, markdown=True),
        "",
        "## Notes",
        "",
    ]
    lines += [f"- **{r.name}**: {r.note}" for r in results if r.note]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(SECTIONS)}")
    parser.add_argument("--soak", action="store_true", help="also run bench/soak.py (if present)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the markdown table")
    args = parser.parse_args(argv)
    chosen = dict(SECTIONS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = set(names) - set(SECTIONS)
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
        chosen = {n: SECTIONS[n] for n in names}
    if args.soak:
        soak = _soak()
        if soak is None:
            print("bench/soak.py has no run(); skipped")
        else:
            chosen["soak"] = soak

    results: list[Result] = []
    timings: dict[str, float] = {}
    loads: dict[str, str] = {}
    started = time.perf_counter()
    for name, run in chosen.items():
        loads[name] = load_average()
        t0 = time.perf_counter()
        print(f"== {name} ...", flush=True)
        got = run()
        timings[name] = time.perf_counter() - t0
        print_results(got)
        print(f"   ({timings[name]:.0f} s)\n", flush=True)
        results += got
    total = time.perf_counter() - started

    print(f"== all benchmarks ({total:.0f} s)")
    print(table(results))
    write_markdown(args.out, results, timings, total, loads)
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
