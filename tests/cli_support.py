"""Running ``kontext-bot`` as a user does, for the CLI tests: a real process, the provider emulator as
its own process over loopback, and an environment with nothing pointing at a real service."""

from __future__ import annotations

import asyncio
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.emulator import ProviderEmulator

ROOT = Path(__file__).resolve().parent.parent
STARTUP = 60.0  # seconds an emulator may take to print its URL
FAST_POLLS = "".join(f"[providers.{name}]\npoll_interval = 0.1\n" for name in ProviderEmulator.KEYS)
FAST_POLLS += "[limits]\nallow_private_results = true\n"  # the emulator serves results on loopback


def kontext_bot() -> list[str]:
    """The installed console script (what operators run), else the module: same code either way."""
    script = Path(sys.executable).with_name("kontext-bot")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot"]


@contextmanager
def emulator(*args: str) -> Iterator[str]:
    """The emulator as its own process, as a deployment's provider would be; yields its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.emulator", "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        # A bound only so a broken start fails the test instead of hanging it; not a timing check.
        ready, _, _ = select.select([proc.stdout], [], [], STARTUP)
        assert ready, f"the emulator printed nothing in {STARTUP} s"
        line = proc.stdout.readline().strip()
        assert line.startswith("EMULATOR_URL="), line
        yield line.split("=", 1)[1]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def provider_env(url: str, tmp: Path) -> dict[str, str]:
    """Keys and base URLs for every provider, and quick polling (real providers want 3-5 s)."""
    config = tmp / "kontext.toml"
    config.write_text(FAST_POLLS)
    env = {"KONTEXT_CONFIG": str(config), "KONTEXT_DB": str(tmp / "k.db")}
    for name, key in ProviderEmulator.KEYS.items():
        env[f"{name.upper()}_API_KEY"] = key
        env[f"{name.upper()}_BASE_URL"] = url
    return env


def clean_env(env: dict[str, str]) -> dict[str, str]:
    drop = ("DISCORD_", "KONTEXT_", "MODELVERSE_", "VTRIX_", "WAVESPEED_")
    full = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**full, **env}


async def run_cli(*args: str, env: dict[str, str], cwd: Path, module: bool = True) -> tuple[int, str, str]:
    """``python -m bot ARGS`` (or the console script with ``module=False``); (status, stdout, stderr)."""
    command = [sys.executable, "-m", "bot"] if module else kontext_bot()
    proc = await asyncio.create_subprocess_exec(
        *command,
        *args,
        cwd=cwd,
        env=clean_env(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:  # a test that fails (or is cancelled) meanwhile leaves no process behind
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def run_cli_sync(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The console script, synchronously, for tests with nothing else to run meanwhile."""
    return subprocess.run(
        [*kontext_bot(), *args], cwd=cwd, env=clean_env(env), capture_output=True, text=True, timeout=60
    )


def one_error_line(err: str) -> str:
    """The one ``kontext-bot: ...`` line a failure prints on stderr (no traceback), without its prefix."""
    lines = [line for line in err.splitlines() if line.startswith("kontext-bot:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0].removeprefix("kontext-bot: ")
