"""The model catalog: what each model takes, what it costs, and which providers serve it.

Every request is checked here before any network call, so a broken rule costs nothing and says
what is allowed. ``schema`` says what a model is; ``default_models`` holds the models of the seeds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from bot.catalog.default_models import CNY_PER_USD, PROVIDERS, default_models
from bot.catalog.schema import (
    ASPECT_RATIOS,
    MAX_PROMPT_CHARS,
    SEED_MAX,
    Kind,
    Model,
    Param,
    Route,
    ValidatedJob,
    shown_name,
    shown_value,
)
from bot.errors import NoRouteError, ValidationError
from bot.money import usd_to_micros

SANDBOX = "sandbox"

__all__ = [
    "ASPECT_RATIOS",
    "CNY_PER_USD",
    "MAX_PROMPT_CHARS",
    "PROVIDERS",
    "SANDBOX",
    "SEED_MAX",
    "Catalog",
    "Kind",
    "Model",
    "Param",
    "Route",
    "ValidatedJob",
    "shown_name",
]


@dataclass(frozen=True)
class Catalog:
    models: tuple[Model, ...]

    @classmethod
    def default(cls) -> Catalog:
        return cls(default_models()).with_sandbox()

    def get(self, model_id: str) -> Model:
        for m in self.models:
            if m.id == model_id:
                return m
        # Accept the short form ("flux-kontext-pro/multi") since users type it.
        matches = [m for m in self.models if m.id.split("/", 1)[1] == model_id]
        if len(matches) == 1:
            return matches[0]
        names = ", ".join(m.id for m in self.models)
        raise ValidationError(f"Unknown model {shown_value(model_id)}. Available models: {names}.")

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
