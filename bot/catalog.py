"""The model catalog: what each model takes, what it costs, and which providers serve it.

Parameter ranges and defaults are those of the seeds. Seed 002 (UModelverse's overview) lists
which model accepts which parameter; where a per-model page (seed 000: kontext-max/multi, seed 001:
kontext-pro) lists more, the per-model page describes that model. Every request is checked here
before any network call, so a broken rule costs nothing and says what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from bot.errors import NoRouteError, ValidationError
from bot.money import MICROS_PER_USD, usd_to_micros

SEED_MAX = 9_999_999_999
MAX_PROMPT_CHARS = 2000  # FLUX's T5 encoder reads ~512 tokens; longer prompts are silently cut
ASPECT_RATIOS = ("21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21")
# UModelverse publishes CNY prices (China site). Converted at this rate, rounded up to a micro-dollar;
# override per route in the config file when the real invoice differs.
CNY_PER_USD = 7.2


class Kind(StrEnum):
    EDIT = "edit"
    MULTI = "multi-image"
    TEXT = "text-to-image"


@dataclass(frozen=True)
class Param:
    """One user-settable parameter, by its canonical name."""

    name: str
    type: type  # int, float or str
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None  # for str params without fixed choices
    help: str = ""

    def describe(self) -> str:
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        if self.minimum is not None and self.maximum is not None:
            kind = "an integer" if self.type is int else "a number"
            return f"{kind} from {_num(self.minimum)} to {_num(self.maximum)}"
        if self.pattern == _SIZE_RE:
            return "WIDTHxHEIGHT with each side from 256 to 1536"
        return "text"

    def check(self, model_id: str, value: Any) -> Any:
        """Return the value coerced to the parameter's type, or raise ValidationError."""
        bad = ValidationError(
            f"{shown_name(self.name)} must be {self.describe()} for {model_id} (you gave {_show(value)})."
        )
        if self.type is int:
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise bad
            try:
                value = int(value)
            except ValueError:
                raise bad from None
        elif self.type is float:
            if isinstance(value, bool):
                raise bad
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise bad from None
            if value != value or value in (float("inf"), float("-inf")):
                raise bad
        else:
            if not isinstance(value, str):
                raise bad
            value = value.strip()
        if self.minimum is not None and value < self.minimum:
            raise bad
        if self.maximum is not None and value > self.maximum:
            raise bad
        if self.choices is not None and value not in self.choices:
            raise bad
        if self.pattern is not None and not _pattern_ok(self.pattern, value):
            raise bad
        if self.name == "negative_prompt" and len(value) > MAX_PROMPT_CHARS:
            raise ValidationError(f"negative_prompt is limited to {MAX_PROMPT_CHARS} characters.")
        return value


_SIZE_RE = r"^(\d{3,4})x(\d{3,4})$"


def _pattern_ok(pattern: str, value: str) -> bool:
    m = re.match(pattern, value)
    if not m:
        return False
    if pattern == _SIZE_RE:
        return all(256 <= int(side) <= 1536 for side in m.groups())
    return True


def shown_name(param: str) -> str:
    """A parameter as people meet it: the API's ``n`` is ``count`` in Discord and ``--n`` in the CLI."""
    return "count (n)" if param == "n" else param


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class Route:
    """One provider selling one model: its own model id, price per output image, what it can carry."""

    provider: str
    provider_model: str
    price_micros: int  # per output image
    params: frozenset[str]  # canonical parameter names this route can pass on
    max_n: int = 4
    max_images: int = 4
    limits: Mapping[str, float] = field(default_factory=dict)  # tighter maxima than the model's

    def cannot_carry(self, explicit: Mapping[str, Any]) -> str | None:
        """Why this route cannot honour the explicitly requested parameters, or None."""
        n = int(explicit.get("n", 1))
        if n > self.max_n:
            return f"{self.provider} makes at most {self.max_n} image(s) per job"
        for name, value in explicit.items():
            if name == "n":
                continue
            if name not in self.params:
                return f"{self.provider} does not accept {shown_name(name)}"
            cap = self.limits.get(name)
            if cap is not None and value > cap:
                return f"{self.provider} accepts {shown_name(name)} up to {_num(cap)}"
        return None


@dataclass(frozen=True)
class Model:
    id: str
    label: str
    kind: Kind
    min_images: int
    max_images: int
    params: Mapping[str, Param]
    free_quota: int  # images per user per period (seed 002)
    routes: tuple[Route, ...]
    description: str = ""

    @property
    def can_edit(self) -> bool:
        return self.min_images <= 1 <= self.max_images

    @property
    def can_combine(self) -> bool:
        return self.max_images >= 2

    @property
    def can_create(self) -> bool:
        return self.min_images == 0

    def images_rule(self) -> str:
        if self.min_images == self.max_images:
            return f"exactly {self.min_images} input image{'s' if self.min_images != 1 else ''}"
        if self.min_images == 0:
            return f"at most {self.max_images} input image{'s' if self.max_images != 1 else ''}"
        return f"{self.min_images} to {self.max_images} input images"

    def route(self, provider: str) -> Route | None:
        return next((r for r in self.routes if r.provider == provider), None)


@dataclass(frozen=True)
class ValidatedJob:
    model: Model
    prompt: str
    params: dict[str, Any]  # every parameter of the model, defaults filled in
    explicit: dict[str, Any]  # only what the user set (routes must carry these)

    @property
    def count(self) -> int:
        return int(self.params.get("n", 1))


# --- the parameters, as the seeds give them ---------------------------------------------------


def _seed() -> Param:
    return Param("seed", int, -1, -1, SEED_MAX, help="-1 = random; the same seed repeats a result")


def _guidance(maximum: float) -> Param:
    return Param("guidance", float, 2.5, 1, maximum, help="how closely to follow the prompt")


def _steps(default: int) -> Param:
    return Param("steps", int, default, 1, 50, help="inference steps")


_N = Param("n", int, 1, 1, 4, help="images to make")
_ASPECT = Param("aspect_ratio", str, "1:1", choices=ASPECT_RATIOS, help="width:height of the result")
_NEG = Param("negative_prompt", str, None, help="what should not appear")
_STRENGTH = Param("strength", float, 0.8, 0, 1, help="how much of the input image to keep")
_SIZE = Param("size", str, "1024x1024", pattern=_SIZE_RE, help="pixel size, 256x256 to 1536x1536")


def _params(*ps: Param) -> dict[str, Param]:
    return {p.name: p for p in ps}


def _cny(amount: str) -> int:
    micros = float(amount) * MICROS_PER_USD / CNY_PER_USD
    return int(-(-micros // 1))  # round up to a whole micro-dollar


# Route parameter sets. WaveSpeed's Kontext endpoints take guidance 1-20, aspect ratio and seed;
# its text-to-image endpoints also take num_images. Vtrix takes one output per task, 1-4 inputs.
_WS_EDIT = frozenset({"guidance", "aspect_ratio", "seed"})
_WS_T2I = frozenset({"guidance", "aspect_ratio", "seed", "n"})
_VTRIX = frozenset({"seed", "aspect_ratio", "steps", "guidance", "negative_prompt"})

_BFL = "black-forest-labs"


def _kontext(tier: str, variant: str, kind: Kind, params: dict[str, Param], free: int) -> Model:
    """A FLUX.1 Kontext model: served by UModelverse, WaveSpeedAI and Vtrix."""
    suffix = f"/{variant}" if variant else ""
    model_id = f"{_BFL}/flux-kontext-{tier}{suffix}"
    usd_micros = 40_000 if tier == "pro" else 80_000
    cny = "0.35" if tier == "pro" else "0.70"
    images = {Kind.EDIT: (1, 1), Kind.MULTI: (2, 4), Kind.TEXT: (0, 0)}[kind]
    ws_params = _WS_T2I if kind is Kind.TEXT else _WS_EDIT
    routes = (
        Route("modelverse", model_id, _cny(cny), frozenset(params), max_n=4, max_images=4),
        Route(
            "wavespeed",
            f"wavespeed-ai/flux-kontext-{tier}{suffix}",
            usd_micros,
            ws_params,
            max_n=4 if kind is Kind.TEXT else 1,
            max_images=5,
        ),
        Route(
            "vtrix",
            f"flux_kontext_{tier}",
            usd_micros,
            _VTRIX,
            max_n=1,
            max_images=4,
            limits={"guidance": 10},
        ),
    )
    label = (
        f"FLUX.1 Kontext [{tier}]"
        + {Kind.EDIT: "", Kind.MULTI: " multi-image", Kind.TEXT: " text-to-image"}[kind]
    )
    return Model(model_id, label, kind, *images, params, free, routes)


def _default_models() -> tuple[Model, ...]:
    dev_id = f"{_BFL}/flux.1-dev"
    step_id = "stepfun-ai/step1x-edit"
    return (
        Model(
            dev_id,
            "FLUX.1 [dev]",
            Kind.TEXT,
            0,
            1,
            _params(_N, _SIZE, _STRENGTH, _steps(28), _seed(), _guidance(10)),
            10,
            (
                Route(
                    "modelverse",
                    dev_id,
                    _cny("0.10"),
                    frozenset({"n", "size", "strength", "steps", "seed", "guidance"}),
                    max_images=1,
                ),
            ),
            "text to image, or image to image with strength",
        ),
        # seed 001 (per-model page): n, strength, steps 20, guidance up to 20, negative prompt
        _kontext("pro", "", Kind.EDIT, _params(_N, _STRENGTH, _seed(), _steps(20), _guidance(20), _NEG), 5),
        _kontext("pro", "multi", Kind.MULTI, _params(_seed(), _guidance(10)), 5),
        _kontext("pro", "text-to-image", Kind.TEXT, _params(_N, _ASPECT, _seed(), _guidance(10)), 5),
        Model(
            step_id,
            "Step1X-Edit",
            Kind.EDIT,
            1,
            1,
            _params(_steps(28), _seed(), _guidance(10), _NEG),
            5,
            (
                Route(
                    "modelverse",
                    step_id,
                    _cny("0.30"),
                    frozenset({"steps", "seed", "guidance", "negative_prompt"}),
                    max_n=1,
                ),
            ),
            "instruction-based image editing",
        ),
        _kontext("max", "", Kind.EDIT, _params(_seed(), _guidance(10)), 0),
        # seed 000 (per-model page): n, aspect ratio, steps 20, negative prompt
        _kontext(
            "max", "multi", Kind.MULTI, _params(_N, _ASPECT, _seed(), _steps(20), _guidance(10), _NEG), 0
        ),
        _kontext("max", "text-to-image", Kind.TEXT, _params(_N, _ASPECT, _seed(), _guidance(10)), 0),
    )


SANDBOX = "sandbox"
PROVIDERS = ("modelverse", "wavespeed", "vtrix")


@dataclass(frozen=True)
class Catalog:
    models: tuple[Model, ...]

    @classmethod
    def default(cls) -> Catalog:
        return cls(_default_models()).with_sandbox()

    def get(self, model_id: str) -> Model:
        for m in self.models:
            if m.id == model_id:
                return m
        # Accept the short form ("flux-kontext-pro/multi") since users type it.
        matches = [m for m in self.models if m.id.split("/", 1)[1] == model_id]
        if len(matches) == 1:
            return matches[0]
        names = ", ".join(m.id for m in self.models)
        raise ValidationError(f"Unknown model {_show(model_id)}. Available models: {names}.")

    def validate(
        self, model_id: str, prompt: str, image_count: int, params: Mapping[str, Any]
    ) -> ValidatedJob:
        """Check a request against the model's rules; fill in defaults. Raises ValidationError."""
        model = self.get(model_id)
        prompt = (prompt or "").strip()
        if not prompt:
            raise ValidationError("A prompt is required: describe the image or the edit you want.")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise ValidationError(
                f"The prompt is {len(prompt)} characters; {model.id} takes at most {MAX_PROMPT_CHARS}."
            )
        if not model.min_images <= image_count <= model.max_images:
            raise ValidationError(f"{model.id} takes {model.images_rule()}; you gave {image_count}.")
        explicit: dict[str, Any] = {}
        for name, value in params.items():
            if value is None:
                continue
            param = model.params.get(name)
            if param is None:
                allowed = ", ".join(shown_name(p) for p in model.params) or "no parameters"
                raise ValidationError(
                    f"{shown_name(name)} is not supported by {model.id}; it accepts: {allowed}."
                )
            explicit[name] = param.check(model.id, value)
        # Defaults the user did not set are not "requested": a route may leave them to the provider.
        if explicit.get("n") == 1:
            explicit.pop("n")
        if explicit.get("seed") == -1:
            explicit.pop("seed")
        full = {name: p.default for name, p in model.params.items()}
        full.update(explicit)
        return ValidatedJob(model, prompt, full, explicit)

    def routes_for(
        self, job: ValidatedJob, enabled: Iterable[str], provider: str | None = None
    ) -> list[Route]:
        """The routes that may serve this job, in failover order. Raises NoRouteError if none."""
        enabled = set(enabled)
        model = job.model
        if provider is not None:
            route = model.route(provider)
            if route is None:
                served = ", ".join(r.provider for r in model.routes)
                raise NoRouteError(f"{provider} does not serve {model.id}; it is served by: {served}.")
            if provider not in enabled and provider != SANDBOX:  # the free sandbox is always allowed
                raise NoRouteError(f"Provider {provider} is not enabled (set its API key).")
            candidates = [route]
        else:
            candidates = [r for r in model.routes if r.provider in enabled]
            if not candidates:
                served = ", ".join(r.provider for r in model.routes)
                raise NoRouteError(
                    f"No enabled provider serves {model.id}. It is served by: {served}; "
                    "set one of their API keys."
                )
        usable, reasons = [], []
        for route in candidates:
            why = route.cannot_carry(job.explicit)
            if why is None:
                usable.append(route)
            else:
                reasons.append(why)
        if not usable:
            raise NoRouteError(f"No enabled provider can run this {model.id} job: {'; '.join(reasons)}.")
        return usable

    def with_overrides(self, overrides: Mapping[str, Any]) -> Catalog:
        """Apply the config file's ``[models."<id>"]`` tables: free_quota, routes (order/subset),
        prices (provider -> USD per image). Unknown keys are refused by the config loader."""
        models = []
        for m in self.models:
            o = overrides.get(m.id)
            if not o:
                models.append(m)
                continue
            routes = m.routes
            prices = o.get("prices", {})
            routes = tuple(
                replace(r, price_micros=usd_to_micros(prices[r.provider])) if r.provider in prices else r
                for r in routes
            )
            if "routes" in o:
                by_name = {r.provider: r for r in routes}
                chosen = tuple(by_name[p] for p in o["routes"] if p in by_name and p != SANDBOX)
                routes = chosen + tuple(r for r in routes if r.provider == SANDBOX)
            models.append(replace(m, routes=routes, free_quota=int(o.get("free_quota", m.free_quota))))
        return Catalog(tuple(models))

    def with_sandbox(self) -> Catalog:
        """Every model also served by the built-in sandbox provider, at zero cost."""
        return Catalog(
            tuple(
                replace(
                    m,
                    routes=(*m.routes, Route(SANDBOX, m.id, 0, frozenset(m.params), max_n=4, max_images=4)),
                )
                for m in self.models
            )
        )
