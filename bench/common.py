"""Helpers every benchmark shares: the emulator in its own process, throw-away settings, statistics,
realistic test images, worker subprocesses and the results table.

The emulator runs in a separate process so its CPU is not charged to the bot: ``emulator()`` starts
``python -m bench.common emulator`` (tests.emulator.ProviderEmulator with request recording off, as
its docstring asks of long benches, and the ``output_noise`` knob, which the tests.emulator command
line does not expose) and reads the ``EMULATOR_URL=`` line it prints.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
EMULATOR_KEY = "mv-test-key"  # tests.emulator.ProviderEmulator.KEYS["modelverse"]
MB = 1024 * 1024


# --- statistics --------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def finite(*values: float) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """One row of the table. ``ratio`` is figure / baseline; ``met`` judges the target."""

    name: str
    figure: float
    unit: str
    baseline: float | None
    baseline_label: str
    target: str
    met: bool | None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.figure / self.baseline


def _num(x: float | None, unit: str = "") -> str:
    if x is None:
        return "—"
    if abs(x) >= 1000:
        text = f"{x:,.0f}"
    elif abs(x) >= 100:
        text = f"{x:.0f}"
    elif abs(x) >= 10:
        text = f"{x:.1f}"
    else:
        text = f"{x:.3g}"
    return f"{text} {unit}".rstrip()


def table(results: Sequence[Result], markdown: bool = False) -> str:
    head = ("benchmark", "figure", "baseline", "ratio", "target", "met")
    rows = [
        (
            r.name,
            _num(r.figure, r.unit),
            f"{_num(r.baseline, r.unit)} ({r.baseline_label})"
            if r.baseline is not None
            else r.baseline_label,
            f"{r.ratio:.2f}" if r.ratio is not None else "—",
            r.target,
            {True: "yes", False: "NO", None: "info"}[r.met],
        )
        for r in results
    ]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*row) for row in rows]
    return "\n".join(out)


def print_results(results: Sequence[Result]) -> None:
    print(table(results))
    for r in results:
        if r.note:
            print(f"  * {r.name}: {r.note}")


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load": load_average(),
    }


def load_average() -> str:
    """The 1-minute load average (other processes on the machine skew every figure): '-' if unknown."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "-"


# --- memory ------------------------------------------------------------------------------------


def rss_mb() -> float:
    """Resident set size of this process now, in MiB (from /proc, no psutil needed)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / MB


def peak_rss_mb() -> float:
    """The process's high-water RSS since it started (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RssSampler:
    """Samples RSS on a plain thread every ``interval`` s: peaks between two calls, not just at them."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            self._stop.wait(self.interval)

    def reset(self) -> None:
        self.peak = rss_mb()

    def __enter__(self) -> RssSampler:
        self.peak = rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


# --- throw-away settings -----------------------------------------------------------------------


@contextlib.contextmanager
def temp_settings(
    emulator_url: str,
    *,
    max_concurrency: int = 8,
    limits: Mapping[str, Any] | None = None,
) -> Iterator[Any]:
    """Settings for the modelverse route only, against ``emulator_url``, with a fresh database and a
    KONTEXT_CONFIG TOML file in a temporary directory (both removed afterwards)."""
    from bot.config import load_settings

    with tempfile.TemporaryDirectory(prefix="kontext-bench-") as tmp:
        lines = ["[providers.modelverse]", f"max_concurrency = {int(max_concurrency)}"]
        # The emulator serves results on loopback, which the bot refuses unless told otherwise.
        lines += ["[limits]", "allow_private_results = true"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in (limits or {}).items()]
        config = Path(tmp) / "config.toml"
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        env = {
            "KONTEXT_DB": str(Path(tmp) / "data" / "kontext.db"),
            "KONTEXT_CONFIG": str(config),
            "MODELVERSE_API_KEY": EMULATOR_KEY,
            "MODELVERSE_BASE_URL": emulator_url,
        }
        yield load_settings(env)


# --- the emulator in its own process -----------------------------------------------------------


@dataclass
class EmulatorProcess:
    url: str
    proc: subprocess.Popen[str]

    def cpu_seconds(self) -> float:
        """User + system CPU the emulator has used so far (from /proc)."""
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return float("nan")


@contextlib.contextmanager
def emulator(
    latency: float = 0.0, output_size: tuple[int, int] = (64, 64), noise: bool = False
) -> Iterator[EmulatorProcess]:
    cmd = [PYTHON, "-m", "bench.common", "emulator", "--latency", str(latency)]
    cmd += ["--output-size", f"{output_size[0]}x{output_size[1]}"]
    if noise:
        cmd.append("--noise")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("EMULATOR_URL="):
            raise RuntimeError(f"the emulator did not start (it printed {line!r})")
        yield EmulatorProcess(line.split("=", 1)[1], proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _serve_emulator(args: argparse.Namespace) -> None:
    from aiohttp import web

    from tests.emulator import ProviderEmulator

    # aiohttp listens with a backlog of 128: 500 clients connecting at once overflow it and the
    # dropped SYNs come back a whole second later, which would time the kernel, not the clients.
    # A real provider's front end takes the burst; this process only (the emulator is not edited).
    plain_init = web.SockSite.__init__

    def init(site: web.SockSite, runner: web.BaseRunner, sock: Any, **kw: Any) -> None:
        kw.setdefault("backlog", 4096)
        plain_init(site, runner, sock, **kw)

    web.SockSite.__init__ = init  # type: ignore[method-assign]
    emu = ProviderEmulator(latency=args.latency, output_size=args.output_size, output_noise=args.noise)
    emu.record = False  # thousands of calls: keep neither bodies nor headers
    await emu.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    print(f"EMULATOR_URL={emu.url}", flush=True)
    try:
        await stopping.wait()
    finally:
        await emu.stop()


# --- worker subprocesses -----------------------------------------------------------------------


def run_worker(
    module: str, args: Sequence[str], timeout: float = 240.0, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Run ``python -m module *args`` in a fresh interpreter; it prints one JSON object last."""
    done = subprocess.run(
        [PYTHON, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **env} if env else None,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"{module} printed no result:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return json.loads(lines[-1])


# --- realistic images --------------------------------------------------------------------------

_CACHE = Path(tempfile.gettempdir()) / "kontext-bench-images-v1"


def photo(width: int, height: int, grain: int = 5) -> Any:
    """A grainy, photo-like RGB image: smooth colour regions, mid detail and sensor noise. Unlike a
    flat colour it compresses the way a camera picture does (12 MP at JPEG q90 ~ 3.4 MB)."""
    from PIL import Image, ImageChops

    def layer(cell: int, sigma: int) -> Image.Image:
        bands = [
            Image.effect_noise((width // cell + 2, height // cell + 2), sigma).resize(
                (width, height), Image.Resampling.BICUBIC
            )
            for _ in range(3)
        ]
        return Image.merge("RGB", bands)

    img = ImageChops.add(layer(300, 70), layer(24, 25), scale=1.0, offset=-128)
    fine = Image.effect_noise((width, height), grain).convert("RGB")
    return ImageChops.add(img, fine, scale=1.0, offset=-128)


def _cached(name: str, make: Any) -> bytes:
    path = _CACHE / name
    with contextlib.suppress(OSError):
        return path.read_bytes()
    data = make()
    _CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return data


def camera_jpeg(width: int = 4000, height: int = 3000) -> bytes:
    """A camera-style JPEG (q90, EXIF orientation 6 as phones write it); cached between runs."""

    def make() -> bytes:
        from PIL import Image

        exif = Image.Exif()
        exif[0x0112] = 6
        buf = io.BytesIO()
        photo(width, height).save(buf, "JPEG", quality=90, exif=exif)
        return buf.getvalue()

    return _cached(f"camera-{width}x{height}.jpg", make)


def big_png(side: int = 4096, alpha: bool = False) -> bytes:
    """A provider-style PNG result (photo content, so well over 10 MiB at 4096²); cached."""

    def make() -> bytes:
        img = photo(side, side)
        if alpha:
            from PIL import Image

            img.putalpha(Image.linear_gradient("L").resize((side, side)))
        buf = io.BytesIO()
        img.save(buf, "PNG", compress_level=1)
        return buf.getvalue()

    return _cached(f"result-{side}{'-rgba' if alpha else ''}.png", make)


def distinct(data: bytes, tag: int) -> bytes:
    """A copy of a JPEG that differs in a COM segment: a new object with a new content hash, as
    each member's upload would be, without paying for another encode."""
    comment = f"kontext-bench {tag}".encode()
    return data[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + data[2:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.common")
    sub = parser.add_subparsers(dest="cmd", required=True)
    emu = sub.add_parser("emulator", help="serve the provider emulator (recording off)")
    emu.add_argument("--latency", type=float, default=0.0)
    emu.add_argument(
        "--output-size", type=lambda s: tuple(int(v) for v in s.lower().split("x")), default=(64, 64)
    )
    emu.add_argument("--noise", action="store_true", help="incompressible output images")
    sub.add_parser("machine", help="print machine info")
    args = parser.parse_args(argv)
    if args.cmd == "emulator":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve_emulator(args))
    else:
        print(json.dumps(machine_info(), indent=2))


if __name__ == "__main__":
    main()
