"""What a model is: its kind, its parameters (with ranges, defaults and the check that enforces
them), the routes that sell it, and a request once it has passed the checks.

The shipped models are in ``bot.catalog.default_models``; the ``Catalog`` that looks them up and
validates requests is ``bot.catalog.Catalog``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bot.errors import ValidationError

SEED_MAX = 9_999_999_999
MAX_PROMPT_CHARS = 2000  # FLUX's T5 encoder reads ~512 tokens; longer prompts are silently cut
ASPECT_RATIOS = ("21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21")


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
        if self.pattern == SIZE_RE:
            return "WIDTHxHEIGHT with each side from 256 to 1536"
        return "text"

    def check(self, model_id: str, value: Any) -> Any:
        """Return the value coerced to the parameter's type, or raise ValidationError."""
        shown = shown_value(value)
        bad = ValidationError(
            f"{shown_name(self.name)} must be {self.describe()} for {model_id} (you gave {shown})."
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


SIZE_RE = r"^(\d{3,4})x(\d{3,4})$"


def _pattern_ok(pattern: str, value: str) -> bool:
    m = re.match(pattern, value)
    if not m:
        return False
    if pattern == SIZE_RE:
        return all(256 <= int(side) <= 1536 for side in m.groups())
    return True


def shown_name(param: str) -> str:
    """A parameter as people meet it: the API's ``n`` is ``count`` in Discord and ``--n`` in the CLI."""
    return "count (n)" if param == "n" else param


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def shown_value(value: Any) -> str:
    """A value as a message quotes it: its repr, cut to 40 characters."""
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
