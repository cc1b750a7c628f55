"""Storage stands on its own: it imports nothing from bot/ or cogs/ (it returns facts; bot/ words
them), imports no driver at module level that a SQLite-only install lacks, and every module stays
small."""

from __future__ import annotations

import ast
from pathlib import Path

STORAGE = Path(__file__).resolve().parents[2] / "storage"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_storage_imports_nothing_from_bot_or_cogs():
    for path in STORAGE.glob("*.py"):
        bad = {n for n in _imports(path) if n.split(".")[0] in ("bot", "cogs", "discord")}
        assert not bad, f"{path.name} imports {bad}"


def test_only_the_postgresql_backend_imports_asyncpg():
    # The SQLite default must work without the postgres extra installed.
    users = {p.name for p in STORAGE.glob("*.py") if any(n.startswith("asyncpg") for n in _imports(p))}
    assert users == {"postgres.py"}


def test_storage_modules_stay_small():
    for path in STORAGE.glob("*.py"):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= 400, f"{path.name} has {lines} lines"
