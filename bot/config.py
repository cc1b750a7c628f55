"""Settings: secrets and endpoints from the environment, everything else optionally from a TOML file.

Environment names are a contract (README, users' scripts): DISCORD_TOKEN, KONTEXT_DB, KONTEXT_CONFIG,
<PROVIDER>_API_KEY and <PROVIDER>_BASE_URL, DISCORD_API_BASE, DISCORD_GATEWAY_URL, KONTEXT_FILES,
KONTEXT_LOG_LEVEL, KONTEXT_LOG_FORMAT, KONTEXT_HTTP. A provider is
enabled when its key is set; with none set, the free local sandbox serves every model.
A bad value raises ConfigError naming the setting (never echoing a secret).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot.catalog import PROVIDERS, SANDBOX, Catalog
from bot.errors import ConfigError
from bot.logs import FORMATS as LOG_FORMATS
from bot.logs import LEVELS as LOG_LEVELS
from bot.redact import MIN_SECRET_LENGTH
from storage.targets import Target, UnsupportedTarget, parse_target

DEFAULT_BASE_URLS = {
    "modelverse": "https://api.umodelverse.ai",
    "vtrix": "https://cloud.vtrix.ai",
    "wavespeed": "https://api.wavespeed.ai",
}
DEFAULT_DB = "./data/kontext.db"


@dataclass(frozen=True)
class ProviderSettings:
    name: str
    api_key: str = field(repr=False)
    base_url: str
    connect_timeout: float = 10.0
    read_timeout: float = 120.0  # UModelverse answers synchronously: a generation can take a minute
    poll_interval: float = 3.0  # public clients poll every 3-5 s
    sync_mode: bool = False  # WaveSpeed enable_sync_mode
    max_concurrency: int = 8  # default WaveSpeed accounts run 2 at once; raise for paid tiers

    @property
    def enabled(self) -> bool:
        return bool(self.api_key)


@dataclass(frozen=True)
class Limits:
    """Guards against hostile or accidental input and slow providers. Sizes in bytes / pixels."""

    max_input_bytes: int = 25 * 1024 * 1024  # an attachment larger than this is refused unread
    max_input_pixels: int = 40_000_000  # decompression-bomb guard (Pillow's own is 89 MP)
    max_input_side: int = 2048  # inputs are downscaled to this longest side before upload
    max_output_bytes: int = 50 * 1024 * 1024  # a provider's result larger than this is refused
    upload_limit_bytes: int = 10 * 1024 * 1024  # Discord's default (boost tiers 0-1)
    job_deadline: float = 600.0  # a task not finished by then is failed and refunded
    max_retries: int = 3
    user_jobs_in_flight: int = 3
    max_running: int = 256  # jobs past the queue at once, all providers together
    max_queue: int = 500
    # Inputs read and normalised at once, all jobs together: bounds the raw uploads held in a burst.
    max_inputs_in_flight: int = 4
    # Seconds a worker's claim on a job lasts unless renewed (every third of it): how long a dead
    # process's jobs and provider slots stay held before another process takes them over.
    job_lease: float = 30.0
    # Seconds a stopping worker gives its running jobs before handing the rest back to the queue
    # (well inside the 10 s a container manager waits between SIGTERM and SIGKILL).
    shutdown_grace: float = 5.0
    # Seconds between a worker's looks at the queue when nothing wakes it. One process wakes its
    # worker itself and PostgreSQL tells every process (LISTEN/NOTIFY); this is what a worker on
    # SQLite in another process than the gateway waits at most, and a fallback everywhere else.
    queue_poll: float = 2.0
    # Provider result links on private, loopback or link-local addresses are refused: a provider (or
    # whoever answers for it) must not point the bot at the operator's own network or the cloud
    # metadata service. Only a provider that really lives on a private network (and the tests'
    # emulator on 127.0.0.1) needs this on. Members' image links are never allowed there.
    allow_private_results: bool = False


@dataclass(frozen=True)
class Settings:
    discord_token: str = field(default="", repr=False)
    db_path: str = field(default=DEFAULT_DB, repr=False)  # KONTEXT_DB: a URL may carry a password
    discord_api_base: str | None = None
    discord_gateway_url: str | None = None
    providers: Mapping[str, ProviderSettings] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    catalog: Catalog = field(default_factory=Catalog.default)
    config_file: str | None = None
    files_dir: str | None = None  # KONTEXT_FILES: inputs and undelivered results (default: beside the db)
    log_level: str | None = None  # KONTEXT_LOG_LEVEL; None: the command's default (bot/cli/main.py)
    log_format: str = "text"  # KONTEXT_LOG_FORMAT: text | json
    http_addr: tuple[str, int] | None = None  # KONTEXT_HTTP host:port: /metrics and /healthz; None: off

    @property
    def enabled_providers(self) -> tuple[str, ...]:
        """Providers with a key, in catalog order; the sandbox when there are none."""
        real = tuple(p for p in PROVIDERS if p in self.providers and self.providers[p].enabled)
        return real or (SANDBOX,)

    @property
    def sandbox_only(self) -> bool:
        return self.enabled_providers == (SANDBOX,)

    @property
    def db_target(self) -> Target:
        """KONTEXT_DB parsed: a SQLite path, or a PostgreSQL URL (checked by load_settings)."""
        return parse_target(self.db_path)

    @property
    def db_label(self) -> str:
        """KONTEXT_DB for people and logs: the path, or the URL with its password redacted."""
        return self.db_target.label

    @property
    def data_dir(self) -> Path:
        """Where files beside the database go (kept input images): the SQLite file's folder, or
        ./data when the database is a PostgreSQL server."""
        db = self.db_target
        return db.path.parent if db.dialect == "sqlite" else Path(DEFAULT_DB).parent

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for scrubbing text before it is logged or shown."""
        values = [self.discord_token, *(p.api_key for p in self.providers.values()), *self.db_target.secrets]
        return tuple(v for v in values if v and len(v) >= MIN_SECRET_LENGTH)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the environment (and KONTEXT_CONFIG's TOML file, if set). Raises ConfigError."""
    env = os.environ if env is None else env
    file_data: dict[str, Any] = {}
    config_file = env.get("KONTEXT_CONFIG") or None
    if config_file:
        file_data = _read_toml(config_file)
    unknown = set(file_data) - {"limits", "providers", "models", "database"}
    if unknown:
        raise ConfigError(f"KONTEXT_CONFIG: unknown section(s) {', '.join(sorted(unknown))}.")

    providers = {}
    provider_file = file_data.get("providers", {})
    for name in PROVIDERS:
        upper = name.upper()
        key = env.get(f"{upper}_API_KEY", "").strip()
        base = env.get(f"{upper}_BASE_URL", "").strip() or DEFAULT_BASE_URLS[name]
        _check_url(f"{upper}_BASE_URL", base)
        extra = provider_file.get(name, {})
        if "api_key" in extra:
            raise ConfigError(f"KONTEXT_CONFIG: put the {name} key in {upper}_API_KEY, not in the file.")
        providers[name] = _apply(
            ProviderSettings(name, key, base.rstrip("/")), extra, f"KONTEXT_CONFIG [providers.{name}]"
        )

    limits = _apply(Limits(), file_data.get("limits", {}), "KONTEXT_CONFIG [limits]")
    catalog = Catalog.default()
    model_overrides = file_data.get("models", {})
    if model_overrides:
        for model_id in model_overrides:
            try:
                catalog.get(model_id)
            except Exception:
                raise ConfigError(f"KONTEXT_CONFIG [models]: unknown model {model_id!r}.") from None
        try:
            catalog = catalog.with_overrides(model_overrides)
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"KONTEXT_CONFIG [models]: {exc}") from None

    db_path = env.get("KONTEXT_DB", "").strip() or file_data.get("database", {}).get("path") or DEFAULT_DB
    _check_db(str(db_path))
    api_base = env.get("DISCORD_API_BASE", "").strip() or None
    gateway = env.get("DISCORD_GATEWAY_URL", "").strip() or None
    if api_base:
        _check_url("DISCORD_API_BASE", api_base)
    if gateway:
        _check_url("DISCORD_GATEWAY_URL", gateway, schemes=("ws", "wss"))
    return Settings(
        discord_token=env.get("DISCORD_TOKEN", "").strip(),
        db_path=db_path,
        discord_api_base=api_base.rstrip("/") if api_base else None,
        discord_gateway_url=gateway,
        providers=providers,
        limits=limits,
        catalog=catalog,
        config_file=config_file,
        files_dir=env.get("KONTEXT_FILES", "").strip() or None,
        log_level=_choice(env, "KONTEXT_LOG_LEVEL", LOG_LEVELS, upper=True),
        log_format=_choice(env, "KONTEXT_LOG_FORMAT", LOG_FORMATS) or "text",
        http_addr=_http_addr(env.get("KONTEXT_HTTP", "").strip()),
    )


def _choice(
    env: Mapping[str, str], name: str, allowed: tuple[str, ...], *, upper: bool = False
) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    value = raw.upper() if upper else raw.lower()
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)} (got {raw[:40]!r}).")
    return value


def _http_addr(value: str) -> tuple[str, int] | None:
    """KONTEXT_HTTP: ``host:port`` (``[::1]:8080`` for IPv6; port 0 picks a free one)."""
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(
            f"KONTEXT_HTTP must be host:port, like 0.0.0.0:8080 or 127.0.0.1:9100 (got {value[:60]!r})."
        )
    return host, int(port)


def _check_db(value: str) -> None:
    """A SQLite path, or postgresql:// (postgres://); any other ``scheme://`` is a mistake that would
    otherwise become a SQLite file in a folder named after the scheme."""
    try:
        target = parse_target(value)
    except UnsupportedTarget as exc:
        raise ConfigError(
            f"KONTEXT_DB: unsupported URL scheme {exc.scheme!r}; use a SQLite path or postgresql://..."
        ) from None
    if target.dialect == "postgres":
        parts = urlsplit(target.value)
        if not parts.hostname and "host=" not in parts.query:
            raise ConfigError(f"KONTEXT_DB: {target.label} names no host; use postgresql://user@host/dbname.")
        if parts.path.strip("/") == "":
            raise ConfigError(
                f"KONTEXT_DB: {target.label} names no database; use postgresql://user@host/dbname."
            )


def _read_toml(path: str) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"KONTEXT_CONFIG: no such file {path!r}.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"KONTEXT_CONFIG: {path!r} is not valid TOML ({exc}).") from None


def _check_url(name: str, value: str, schemes: tuple[str, ...] = ("http", "https")) -> None:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        shown = value if "@" not in value else "a value with credentials in it"  # never echo a secret
        raise ConfigError(
            f"{name} must be a {'/'.join(schemes)} URL like {schemes[-1]}://host (got {shown!r})."
        )


def _apply(obj: Any, values: Mapping[str, Any], where: str) -> Any:
    """Replace dataclass fields from a TOML table, checking names and types."""
    known = {f.name: f for f in fields(obj) if f.name not in ("name", "api_key", "base_url")}
    changes = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown setting {key!r}; known: {', '.join(sorted(known))}.")
        current = getattr(obj, key)
        if isinstance(current, bool):
            ok = isinstance(value, bool)
        elif isinstance(current, int):
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        elif isinstance(current, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
            value = float(value) if ok else value
        else:
            ok = isinstance(value, type(current))
        if not ok:
            raise ConfigError(f"{where}: {key} must be a positive {type(current).__name__} (got {value!r}).")
        changes[key] = value
    return replace(obj, **changes)
