"""The models this bot ships with, as the seeds give them: parameters, free quotas, the providers
that serve each model, and their prices.

Parameter ranges and defaults are those of the seeds. Seed 002 (UModelverse's overview) lists
which model accepts which parameter; where a per-model page (seed 000: kontext-max/multi, seed 001:
kontext-pro) lists more, the per-model page describes that model. An operator changes quotas,
route order and prices in the config file (``Catalog.with_overrides``), not here.
"""

from __future__ import annotations

from bot.catalog.schema import ASPECT_RATIOS, SEED_MAX, SIZE_RE, Kind, Model, Param, Route
from bot.money import MICROS_PER_USD

# UModelverse publishes CNY prices (China site). Converted at this rate, rounded up to a micro-dollar;
# override per route in the config file when the real invoice differs.
CNY_PER_USD = 7.2


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
_SIZE = Param("size", str, "1024x1024", pattern=SIZE_RE, help="pixel size, 256x256 to 1536x1536")


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


def default_models() -> tuple[Model, ...]:
    """The models of seeds 000-002, each with its routes in failover order."""
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


PROVIDERS = ("modelverse", "wavespeed", "vtrix")
