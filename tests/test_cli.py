"""`kontext-bot generate` and `models` as a user runs them: real processes, the emulator over loopback.

Every catalog model runs through every route that serves it, and through the sandbox; the files
written must open as images.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from bot.catalog import SANDBOX, Catalog
from tests.cli_support import emulator, provider_env, run_cli
from tests.emulator import make_png

CATALOG = Catalog.default()
ROUTES = [(m.id, r.provider) for m in CATALOG.models for r in m.routes]


@pytest.fixture(scope="module")
def emulator_process() -> Iterator[str]:
    with emulator() as url:
        yield url


def image_args(model_id: str, tmp: Path) -> list[str]:
    model = CATALOG.get(model_id)
    count = max(model.min_images, 0)
    if model.min_images == 0 and model.max_images == 1:
        count = 1  # flux.1-dev: also try its optional image
    args = []
    for i in range(count):
        path = tmp / f"in{i}.png"
        path.write_bytes(make_png(200 + 10 * i, 160, (40 * i, 90, 160)))
        args += ["--image", str(path)]
    return args


async def test_every_model_through_every_route_writes_real_images(emulator_process, tmp_path):
    env = provider_env(emulator_process, tmp_path)
    limit = asyncio.Semaphore(4)
    # Written once, before any process reads them: rewriting a shared input while another job
    # reads it would hand that job a truncated file.
    inputs = {model_id: image_args(model_id, tmp_path) for model_id, _ in ROUTES}

    async def one(model_id: str, provider: str) -> tuple[str, str, dict]:
        async with limit:
            out_dir = tmp_path / "out" / f"{model_id.replace('/', '_')}-{provider}"
            code, out, err = await run_cli(
                "generate",
                "--model",
                model_id,
                "--prompt",
                "a red fox, watercolour",
                "--provider",
                provider,
                "--out",
                str(out_dir),
                "--json",
                *inputs[model_id],
                env=env,
                cwd=tmp_path,
            )
            assert code == 0, f"{model_id} via {provider}: {err}"
            return model_id, provider, json.loads(out)

    # return_exceptions: a failing job must not leave the others running past the test.
    outcomes = await asyncio.gather(*(one(m, p) for m, p in ROUTES), return_exceptions=True)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert not errors, errors
    results = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(results) == len(ROUTES) == 28
    for model_id, provider, summary in results:
        assert summary["status"] == "succeeded" and summary["provider"] == provider
        assert summary["model"] == model_id and isinstance(summary["seed"], int)
        assert summary["job_id"] and summary["charged_to"] == "operator"
        expected_cost = "0.00" if provider == SANDBOX else None
        if expected_cost:
            assert summary["cost_usd"] == expected_cost and summary["sandbox"] is True
        else:
            assert float(summary["cost_usd"]) > 0
        assert summary["images"]
        for path in summary["images"]:
            with Image.open(tmp_path / path) as img:
                img.verify()


async def test_sandbox_is_used_and_announced_when_no_key_is_set(tmp_path):
    code, out, err = await run_cli(
        "generate",
        "--model",
        "flux-kontext-max/text-to-image",
        "--prompt",
        "a lighthouse",
        "--n",
        "2",
        env={"KONTEXT_DB": str(tmp_path / "k.db")},
        cwd=tmp_path,
    )
    assert code == 0, err
    assert "Sandbox mode" in err
    assert "2 image(s)" in out and "via sandbox" in out
    written = sorted((tmp_path / "out").iterdir())
    assert len(written) == 2
    with Image.open(written[0]) as img:
        assert img.info.get("kontext-bot") == "sandbox"  # marked as sandbox output


async def test_member_jobs_report_who_paid_and_free_images_left(emulator_process, tmp_path):
    env = provider_env(emulator_process, tmp_path)
    src = tmp_path / "in.png"
    src.write_bytes(make_png(300, 200))
    args = [
        "generate",
        "--model",
        "black-forest-labs/flux-kontext-pro",
        "--prompt",
        "pencil sketch",
        "--image",
        str(src),
        "--user",
        "42",
        "--guild",
        "7",
        "--json",
    ]
    code, out, err = await run_cli(*args, env=env, cwd=tmp_path)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["charged_to"] == "free" and summary["free_remaining"] == 4
    code, out, _ = await run_cli("quota", "--user", "42", "--guild", "7", "--json", env=env, cwd=tmp_path)
    quota = json.loads(out)["models"]["black-forest-labs/flux-kontext-pro"]
    assert (quota["free_limit"], quota["free_used"], quota["free_remaining"]) == (5, 1, 4)


# Exit 2: the command line asks what cannot be done (a catalog rule, a provider with no key).
# Exit 1: the request was valid but refused (an input image the bot will not fetch).
@pytest.mark.parametrize(
    ("args", "needle", "status"),
    [
        (["--model", "nope/model", "--prompt", "x"], "Unknown model", 2),
        (["--model", "flux-kontext-max", "--prompt", "x"], "exactly 1 input image; you gave 0", 2),
        (
            ["--model", "flux-kontext-pro/text-to-image", "--prompt", "x", "--steps", "10"],
            "steps is not supported",
            2,
        ),
        (
            ["--model", "flux-kontext-pro/text-to-image", "--prompt", "x", "--n", "9"],
            "integer from 1 to 4",
            2,
        ),
        (
            ["--model", "flux-kontext-pro/text-to-image", "--prompt", "x", "--provider", "wavespeed"],
            "not enabled",
            2,
        ),
        (
            ["--model", "flux-kontext-pro", "--prompt", "x", "--image", "http://127.0.0.1/cat.png"],
            "private",
            1,
        ),
    ],
)
async def test_refusals_are_one_clear_line_and_a_nonzero_exit(tmp_path, args, needle, status):
    code, out, err = await run_cli(
        "generate", *args, env={"KONTEXT_DB": str(tmp_path / "k.db")}, cwd=tmp_path
    )
    lines = [line for line in err.splitlines() if line.startswith("kontext-bot:")]
    assert code == status and out == ""
    assert len(lines) == 1 and needle in lines[0], err


async def test_a_provider_failure_fails_over_and_a_refusal_does_not(emulator_process, tmp_path):
    import httpx

    env = provider_env(emulator_process, tmp_path)
    args = ["generate", "--model", "flux-kontext-pro/text-to-image", "--prompt", "a fox", "--json"]
    async with httpx.AsyncClient(base_url=emulator_process) as http:
        await http.post("/_emulator/reset")
        await http.post("/_emulator/fault", json={"provider": "modelverse", "kind": "bad_key"})
        code, out, err = await run_cli(*args, env=env, cwd=tmp_path)
        assert code == 0, err
        assert json.loads(out)["provider"] == "wavespeed"  # the next route in the catalog
        await http.post("/_emulator/fault", json={"provider": "modelverse", "kind": "content_refused"})
        code, out, err = await run_cli(*args, env=env, cwd=tmp_path)
        assert code == 1 and "you were not charged" in err
        requests = (await http.get("/_emulator/requests")).json()
        await http.post("/_emulator/reset")
    last_submit = [r for r in requests if r["provider"] != "files"][-1]
    assert last_submit["provider"] == "modelverse"  # refused: no failover to another provider


def test_models_lists_the_catalog_without_secrets(tmp_path):
    env = {**os.environ, "VTRIX_API_KEY": "vt-SECRET-98765", "KONTEXT_DB": str(tmp_path / "k.db")}
    out = subprocess.run(
        [sys.executable, "-m", "bot", "models", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "vt-SECRET-98765" not in out
    data = json.loads(out)
    assert data["sandbox_only"] is False and len(data["models"]) == 8
    pro = next(m for m in data["models"] if m["id"] == "black-forest-labs/flux-kontext-pro")
    enabled = {r["provider"]: r["enabled"] for r in pro["routes"]}
    assert enabled == {"modelverse": False, "wavespeed": False, "vtrix": True, "sandbox": True}
    assert pro["free_quota"] == 5 and pro["parameters"]["guidance"]["allowed"] == "a number from 1 to 20"


def test_a_bad_setting_is_one_line_naming_it(tmp_path):
    env = {**os.environ, "WAVESPEED_BASE_URL": "not a url"}
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "models"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "WAVESPEED_BASE_URL" in proc.stderr


async def test_quota_and_usage_after_a_scripted_series_of_jobs(emulator_process, tmp_path):
    """Two members, free and paid jobs, one refusal: the reports add up to the cent."""
    env = provider_env(emulator_process, tmp_path)
    src = tmp_path / "in.png"
    src.write_bytes(make_png(300, 200))

    async def cli(*args: str) -> tuple[int, str, str]:
        return await run_cli(*args, env=env, cwd=tmp_path)

    assert (await cli("admin", "budget", "--guild", "7", "--usd", "0.10"))[0] == 0
    t2i = ["generate", "--model", "flux-kontext-max/text-to-image", "--prompt", "a fox", "--guild", "7"]
    assert (await cli(*t2i, "--user", "1", "--provider", "wavespeed"))[0] == 0  # $0.08 from the guild
    code, _, err = await cli(*t2i, "--user", "2", "--provider", "wavespeed")  # $0.02 left: refused
    assert code == 1 and "would cost $0.08" in err
    edit = [
        "generate",
        "--model",
        "flux-kontext-pro",
        "--prompt",
        "a hat",
        "--image",
        str(src),
        "--guild",
        "7",
    ]
    for _ in range(2):
        assert (await cli(*edit, "--user", "2"))[0] == 0  # free quota
    code, out, _ = await cli("usage", "--guild", "7", "--by", "user", "--format", "json")
    rows = {row["user"]: row for row in json.loads(out)}
    assert rows["1"]["images"] == 1 and rows["1"]["cost_usd"] == 0.08
    assert rows["2"]["jobs"] == 3 and rows["2"]["refused"] == 1 and rows["2"]["succeeded"] == 2
    code, out, _ = await cli("usage", "--guild", "7", "--by", "team", "--format", "csv")
    assert "guild,1,1,1,0.080000" in out and "free,2,2,2," in out
    code, out, _ = await cli("quota", "--user", "2", "--guild", "7", "--json")
    quota = json.loads(out)
    assert quota["models"]["black-forest-labs/flux-kontext-pro"]["free_remaining"] == 3
    assert quota["spent_usd"] == 0 and quota["guild_budget"]["remaining_usd"] == pytest.approx(0.02)
    code, out, _ = await cli("db", "check")
    assert code == 0 and "balance" in out


def test_run_says_so_in_one_line_when_discord_cannot_be_reached(tmp_path):
    env = {
        **os.environ,
        "DISCORD_TOKEN": "not-a-real-token",
        "DISCORD_API_BASE": "http://127.0.0.1:9/api/v10",  # the discard port: nothing listens
        "DISCORD_GATEWAY_URL": "ws://127.0.0.1:9/gateway",
        "KONTEXT_DB": str(tmp_path / "k.db"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("Sandbox mode: no provider API key is set")  # said at start
    assert proc.stderr.strip().splitlines()[-1].startswith("kontext-bot: Cannot reach Discord")
    assert "Traceback" not in proc.stderr
