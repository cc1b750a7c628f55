"""Fixtures shared by every test: the provider emulator, small real images, and the databases."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from tests.emulator import ProviderEmulator, make_png
from tests.pg import PostgresRun


@pytest.fixture
async def emulator() -> AsyncIterator[ProviderEmulator]:
    """A started ProviderEmulator serving all three provider APIs on 127.0.0.1."""
    emu = ProviderEmulator()
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


@pytest.fixture
def png_bytes() -> Callable[..., bytes]:
    """``png_bytes()`` -> a 32x32 PNG; ``png_bytes(300, 200, color=(0, 0, 255))`` for others."""
    return make_png


@pytest.fixture(scope="session")
def postgres_run() -> Iterator[PostgresRun]:
    """This run's PostgreSQL database (tests/pg.py): KONTEXT_TEST_POSTGRES, else a throwaway
    cluster; a test that needs it fails (never skips) when neither can be had."""
    run = PostgresRun.start()
    try:
        yield run
    finally:
        run.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def new_db_target(request, tmp_path) -> Callable[[], str]:
    """Makes fresh database targets, once per backend: SQLite paths under tmp_path, or PostgreSQL
    URLs whose search_path is a new schema. Tests that take it (or ``db_target``) run on both,
    with the ids ``sqlite`` and ``postgres``."""
    if request.param == "postgres":
        return request.getfixturevalue("postgres_run").new_target
    made = itertools.count(1)
    return lambda: str(tmp_path / f"db{next(made)}" / "kontext.db")


@pytest.fixture
def db_target(new_db_target) -> str:
    """Where this test's database goes (see ``new_db_target``)."""
    return new_db_target()
