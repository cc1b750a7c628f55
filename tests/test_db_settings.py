"""KONTEXT_DB: a SQLite path or a PostgreSQL URL; any other scheme is one clear line; a URL's
password is a secret like a provider key (never in a repr, an error or a log line)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import ConfigError, UserError
from bot.logs import SecretFilter
from bot.services import open_services
from bot.storage_errors import worded

ROOT = Path(__file__).resolve().parents[1]
URL = "postgresql://kontext:Hunter2-s3cret@db.example:5433/kontext"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_postgresql_url_selects_postgresql(scheme):
    s = load_settings({"KONTEXT_DB": URL.replace("postgresql", scheme, 1)})
    assert s.db_target.dialect == "postgres"
    assert s.db_label == f"{scheme}://kontext:[redacted]@db.example:5433/kontext"
    assert "Hunter2-s3cret" in s.secrets()  # scrubbed from every log line like a provider key
    assert "Hunter2-s3cret" not in repr(s)
    assert s.data_dir == Path("./data")  # kept inputs stay on this machine's disk


def test_anything_else_is_a_sqlite_path_as_before(tmp_path):
    s = load_settings({"KONTEXT_DB": str(tmp_path / "k.db")})
    assert (s.db_target.dialect, s.db_label, s.data_dir) == ("sqlite", str(tmp_path / "k.db"), tmp_path)
    assert load_settings({"KONTEXT_DB": "C:\\bots\\k.db"}).db_target.dialect == "sqlite"


@pytest.mark.parametrize(
    ("value", "line"),
    [
        (
            "mysql://u:pw@h/db",
            "KONTEXT_DB: unsupported URL scheme 'mysql'; use a SQLite path or postgresql://...",
        ),
        (
            "sqlite:///data/k.db",
            "KONTEXT_DB: unsupported URL scheme 'sqlite'; use a SQLite path or postgresql://...",
        ),
        ("postgresql://u:pw@/kontext", "KONTEXT_DB: postgresql://u:[redacted]@/kontext names no host"),
        (
            "postgresql://u:pw@db.example",
            "KONTEXT_DB: postgresql://u:[redacted]@db.example names no database",
        ),
    ],
)
def test_a_url_that_cannot_work_is_one_line(value, line):
    with pytest.raises(ConfigError) as err:
        load_settings({"KONTEXT_DB": value})
    assert err.value.user_message.startswith(line)
    assert "pw@" not in err.value.user_message and "\n" not in err.value.user_message


async def test_an_unreachable_server_is_one_clear_line_without_the_password(tmp_path):
    settings = load_settings({"KONTEXT_DB": "postgresql://kontext:Hunter2-s3cret@127.0.0.1:9/kontext"})
    with pytest.raises(UserError) as err:  # both faces print it as it is
        async with open_services(settings):
            pass
    text = err.value.user_message
    assert text.startswith("Cannot reach the database postgresql://kontext:[redacted]@127.0.0.1:9/kontext: ")
    assert "Hunter2" not in text and "\n" not in text


def test_the_cli_never_prints_the_password(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "KONTEXT_DB": "postgresql://kontext:Hunter2-s3cret@127.0.0.1:9/kontext",
    }
    for command in (["db", "check"], ["db", "migrate"], ["quota", "--user", "1"], ["-v", "usage"]):
        done = subprocess.run(
            [sys.executable, "-m", "bot", *command], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 1, (command, done.stderr)
        assert "Hunter2" not in done.stdout + done.stderr
        assert (
            "kontext-bot: Cannot reach the database postgresql://kontext:[redacted]@127.0.0.1:9"
            in done.stderr
        )
    bad = subprocess.run(
        [sys.executable, "-m", "bot", "db", "check"],
        cwd=tmp_path,
        env={**env, "KONTEXT_DB": "mysql://root:Hunter2-s3cret@h/db"},
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Hunter2" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        "kontext-bot: KONTEXT_DB: unsupported URL scheme 'mysql'; use a SQLite path or postgresql://..."
    ]
    assert not any(tmp_path.iterdir())  # no folder named after the scheme, no SQLite file


def test_the_log_filter_scrubs_the_password_from_driver_text():
    settings = load_settings({"KONTEXT_DB": URL})
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed: %s", (URL,), None)
    SecretFilter(settings.secrets()).filter(record)
    assert "Hunter2" not in record.getMessage()


def test_every_storage_fact_has_words():
    import storage

    facts = [
        storage.JobNotFound("j1"),
        storage.SchemaTooNew("k.db", 9, 1),
        storage.MigrationFailed("k.db", "0002_x.sql", 1, "boom"),
        storage.NotADatabase("k.db", "file is not a database"),
        storage.DatabaseMissing("k.db"),
        storage.DatabaseBusy("k.db", "locked"),
        storage.DatabaseFull("k.db", "full"),
        storage.DatabaseUnavailable("postgresql://u:[redacted]@h/d", "refused"),
        storage.UnsupportedTarget("mysql"),
        storage.SameDatabase("k.db"),
        storage.TargetNotEmpty("k.db", ["jobs"]),
        storage.CopyMismatch("k.db", ["jobs: 1 rows, the source has 2"]),
    ]
    for fact in facts:
        with pytest.raises(UserError) as err, worded():
            raise fact
        assert err.value.user_message and err.value.__cause__ is fact
    with pytest.raises(storage.IntegrityViolation), worded():  # nobody's to hear: an internal error
        raise storage.IntegrityViolation("UNIQUE constraint failed")
