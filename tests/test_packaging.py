"""What is shipped: the wheel (built here, as a release would be), the Docker build context, and the
pins that make two builds the same."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bot.config import load_settings
from bot.services import open_services

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    # From a clean copy: setuptools builds in-tree, and a stale build/ there could leak old files.
    source = tmp_path_factory.mktemp("source") / "kontext-bot"
    junk = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__", "data", "out")
    shutil.copytree(ROOT, source, ignore=junk)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("kontext_bot-*.whl")
    with zipfile.ZipFile(built) as whl:
        yield whl


def test_the_wheel_installs_the_product_and_nothing_else(wheel):
    names = wheel.namelist()
    top = {n.split("/")[0] for n in names}
    dist_info = next(t for t in top if t.endswith(".dist-info"))
    assert top == {"bot", "cogs", "storage", dist_info}  # no top-level tests (or bench) package
    assert "bot/cli/main.py" in names and any(n.startswith("storage/migrations/") for n in names)
    meta = wheel.read(f"{dist_info}/METADATA").decode()
    assert "License-Expression: MIT" in meta.splitlines()
    assert f"{dist_info}/licenses/LICENSE" in names
    entry_points = wheel.read(f"{dist_info}/entry_points.txt").decode()
    assert "kontext-bot = bot.cli:main" in entry_points


def test_the_license_is_an_spdx_string_and_setuptools_can_read_it():
    assert PYPROJECT["project"]["license"] == "MIT"
    (backend,) = PYPROJECT["build-system"]["requires"]
    assert Requirement(backend).specifier.contains("77")  # the first setuptools with SPDX licenses
    assert not Requirement(backend).specifier.contains("76.9")


def test_ruff_is_pinned_to_the_version_ci_runs():
    pins = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["test"]]
    (ruff,) = [r for r in pins if r.name == "ruff"]
    assert str(ruff.specifier) == f"=={metadata.version('ruff')}"


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([0-9A-Za-z.+\-!]+)", line)
        assert match, f"not an exact pin: {line!r}"
        pins[canonicalize_name(match[1])] = match[2]
    return pins


def test_constraints_pin_every_runtime_dependency_within_its_range():
    pins = _constraints()
    for text in PYPROJECT["project"]["dependencies"]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in constraints.txt: refresh it (README, Docker)"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {req}"
    # ... and their dependencies: each pinned package's own requirements are pinned too.
    for name in pins:
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue  # an extra, or another Python's backport
            assert canonicalize_name(req.name) in pins, f"{name} needs {req.name}, not pinned"


def test_the_docker_image_gets_no_tests_and_runs_as_a_numeric_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [p for p in ignore if p and not p.startswith("#")]
    assert patterns[0] == "*"  # an allow-list: everything is left out unless named
    allowed = {p[1:] for p in patterns if p.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "LICENSE", "constraints.txt", "bot", "cogs", "storage"}
    copies = re.findall(r"^COPY\s+(.+?)\s+\S+$", dockerfile, flags=re.M)
    copied = {src for line in copies for src in line.split()}
    assert copied <= allowed and "tests" not in copied and "." not in copied
    (user,) = re.findall(r"^USER\s+(\S+)$", dockerfile, flags=re.M)
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0
    assert "pip install -r constraints.txt" in dockerfile and "pip install --no-deps ." in dockerfile


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) for every instruction, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def _healthcheck_command() -> list[str]:
    (check,) = [rest for word, rest in _dockerfile_instructions() if word == "HEALTHCHECK"]
    command = json.loads(check[check.index("CMD ") + 4 :])  # the exec form: no shell in between
    assert command[0] == "python"
    return command


def test_the_image_serves_http_on_the_port_it_exposes_as_user_10001():
    instructions = _dockerfile_instructions()
    env = " ".join(rest for word, rest in instructions if word == "ENV")
    assert "KONTEXT_HTTP=0.0.0.0:8080" in env.split()
    assert [rest for word, rest in instructions if word == "EXPOSE"] == ["8080"]
    (user,) = [rest for word, rest in instructions if word == "USER"]
    assert user == "10001:10001"
    (run_useradd,) = [rest for word, rest in instructions if word == "RUN" and "useradd" in rest]
    assert "--uid 10001 --gid 10001" in run_useradd and "groupadd --gid 10001" in run_useradd
    assert "/healthz" in " ".join(_healthcheck_command())


async def test_the_healthcheck_command_passes_on_200_and_fails_on_503(tmp_path):
    settings = load_settings({"KONTEXT_DB": str(tmp_path / "k.db"), "KONTEXT_HTTP": "127.0.0.1:0"})
    async with open_services(settings, serve_http=True) as svc:
        assert svc.status_server is not None
        env = {**os.environ, "KONTEXT_HTTP": f"0.0.0.0:{svc.status_server.port}"}

        async def check() -> int:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, *_healthcheck_command()[1:], env=env, stderr=asyncio.subprocess.DEVNULL
            )
            return await asyncio.wait_for(proc.wait(), 30)

        assert await check() == 0
        await svc.db.close()  # the database is gone: /healthz answers 503, the check fails
        assert await check() != 0


def test_every_process_in_the_compose_example_is_a_command_line_the_bot_accepts():
    """docker-compose.yml's commands parse (names and flags are the CLI's contract), its gateways
    cover every shard once, and every process shares one PostgreSQL database and one files folder."""
    import json as _json
    import re

    from bot.cli.parser import build_parser

    text = (ROOT / "docker-compose.yml").read_text()
    commands = [_json.loads(m) for m in re.findall(r"command: (\[.*\])", text)]
    assert len(commands) == 4
    shards = []
    for command in commands:
        assert command[0] == "kontext-bot"
        args = build_parser().parse_args(command[1:])
        if command[1] == "run":
            assert args.no_worker and args.shard_count == 2
            shards += args.shard_ids
        else:
            assert command[1] == "worker" and args.concurrency >= 1
    assert sorted(shards) == [0, 1]
    assert "KONTEXT_DB: postgresql://" in text and "KONTEXT_FILES: /data/files" in text
