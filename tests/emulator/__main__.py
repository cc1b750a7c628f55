"""``python -m tests.emulator [--port P] [--latency S] [--polls N] [--output-size WxH]``: serve the
emulator until SIGTERM/SIGINT. Prints one line, ``EMULATOR_URL=http://127.0.0.1:<port>``, that a
parent process reads; the control API (``tests.emulator.control``) drives it from there."""

from __future__ import annotations

import argparse
import asyncio
import signal

from tests.emulator.app import ProviderEmulator
from tests.emulator.checks import SIZE


def _size_arg(text: str) -> tuple[int, int]:
    match = SIZE.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError("expected WIDTHxHEIGHT, e.g. 64x64")
    return int(match.group(1)), int(match.group(2))


async def _serve(args: argparse.Namespace) -> None:
    emulator = ProviderEmulator(
        latency=args.latency, polls_until_done=args.polls, output_size=args.output_size
    )
    await emulator.start(port=args.port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    print(f"EMULATOR_URL={emulator.url}", flush=True)  # the one line a parent process reads
    try:
        await stopping.wait()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.emulator", description="Serve the UModelverse, Vtrix and WaveSpeedAI emulator."
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per generation")
    parser.add_argument("--polls", type=int, default=1, help="polls until a task is done")
    parser.add_argument("--output-size", type=_size_arg, default=(64, 64), help="WIDTHxHEIGHT")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
