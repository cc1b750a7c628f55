"""The rules of the house, checked on the tree itself so they stay true (issue 9).

- Imports point one way: cogs -> bot -> storage. storage imports nothing from bot or cogs; bot
  imports nothing from cogs; bot/providers imports neither discord nor storage.
- Only cogs/ and bot/client.py import discord.
- No import cycles between modules (imports inside functions count: a lazy import is still one).
- No module of bot/, cogs/ or storage/ over 500 lines; no test file over 800 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "cogs", "storage")
MAX_MODULE_LINES = 500
MAX_TEST_LINES = 800


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imports_of(path: Path, name: str) -> set[str]:
    """Every module this one imports, anywhere in it (TYPE_CHECKING blocks aside: they never run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(node: ast.AST, typing_only: bool) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child, typing_only)
            return
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child, typing_only)

    visit(tree, False)
    return out


def top(name: str) -> str:
    return name.split(".", 1)[0]


def internal_graph() -> dict[str, set[str]]:
    mods = modules()
    graph = {}
    for name, path in mods.items():
        graph[name] = {target for target in imports_of(path, name) if target in mods and target != name}
    return graph


def test_imports_point_one_way():
    order = {"storage": 0, "bot": 1, "cogs": 2}
    wrong = []
    for name, path in modules().items():
        for target in imports_of(path, name):
            if top(target) in order and order[top(target)] > order[top(name)]:
                wrong.append(f"{name} imports {target}")
    assert wrong == []


def test_only_the_discord_face_imports_discord():
    wrong = [
        name
        for name, path in modules().items()
        if any(top(t) == "discord" for t in imports_of(path, name))
        and not (name.startswith("cogs") or name == "bot.client")
    ]
    assert wrong == []


def test_providers_import_neither_discord_nor_storage():
    wrong = [
        f"{name} imports {t}"
        for name, path in modules().items()
        if name.startswith("bot.providers")
        for t in imports_of(path, name)
        if top(t) in ("discord", "storage", "cogs")
    ]
    assert wrong == []


def test_no_import_cycles():
    graph = internal_graph()
    # A package's __init__ importing its own submodules is not a cycle of the house: count the
    # edges between modules only.
    edges = {
        name: {
            t
            for t in targets
            if not (name != t and t.startswith(name + ".") and modules()[name].name == "__init__.py")
        }
        for name, targets in graph.items()
    }
    seen: dict[str, int] = {}
    cycles: list[list[str]] = []

    def walk(node: str, stack: list[str]) -> None:
        seen[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if seen.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in seen:
                walk(nxt, stack)
        stack.pop()
        seen[node] = 2

    for name in sorted(edges):
        if name not in seen:
            walk(name, [])
    assert cycles == []


def test_modules_and_test_files_stay_small():
    big = [
        f"{path.relative_to(ROOT)} ({n} lines)"
        for path in modules().values()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    ]
    big += [
        f"{path.relative_to(ROOT)} ({n} lines)"
        for path in (ROOT / "tests").rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_TEST_LINES
    ]
    assert big == []


def test_the_checks_see_what_they_check():
    # Guards against a rule passing because it looked at nothing.
    graph = internal_graph()
    assert "bot.jobs" in graph and "storage.queue" in graph["bot.jobs"]
    assert any(top(t) == "discord" for t in imports_of(modules()["cogs.replies"], "cogs.replies"))
    assert len(modules()) > 60
