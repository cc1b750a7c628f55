"""The catalog is the seeds' rules in code: these tests pin them to the documents."""

import pytest

from bot.catalog import (
    ASPECT_RATIOS,
    SANDBOX,
    Catalog,
    Kind,
)
from bot.errors import NoRouteError, ValidationError
from bot.money import micros_to_usd, usd_to_micros

CAT = Catalog.default()
ALL = ("modelverse", "wavespeed", "vtrix")
SEED_002_FREE = {
    "black-forest-labs/flux.1-dev": 10,
    "black-forest-labs/flux-kontext-pro": 5,
    "black-forest-labs/flux-kontext-pro/multi": 5,
    "black-forest-labs/flux-kontext-pro/text-to-image": 5,
    "stepfun-ai/step1x-edit": 5,
    "black-forest-labs/flux-kontext-max": 0,
    "black-forest-labs/flux-kontext-max/multi": 0,
    "black-forest-labs/flux-kontext-max/text-to-image": 0,
}


def test_the_eight_models_of_seed_002_with_their_free_quota():
    assert {m.id: m.free_quota for m in CAT.models} == SEED_002_FREE


def test_kinds_and_image_counts():
    assert CAT.get("black-forest-labs/flux-kontext-pro").kind is Kind.EDIT
    assert CAT.get("black-forest-labs/flux-kontext-max/multi").kind is Kind.MULTI
    assert CAT.get("black-forest-labs/flux-kontext-pro/text-to-image").max_images == 0
    dev = CAT.get("black-forest-labs/flux.1-dev")
    assert (dev.min_images, dev.max_images) == (0, 1)  # seed 002: image optional for flux.1-dev
    assert dev.can_edit and dev.can_create and not dev.can_combine


def test_routes_match_the_issue():
    for m in CAT.models:
        providers = [r.provider for r in m.routes]
        assert providers[0] == "modelverse" and providers[-1] == SANDBOX
        kontext = "flux-kontext" in m.id
        assert ("wavespeed" in providers) == kontext
        assert ("vtrix" in providers) == kontext
    pro_multi = CAT.get("black-forest-labs/flux-kontext-pro/multi")
    assert pro_multi.route("wavespeed").provider_model == "wavespeed-ai/flux-kontext-pro/multi"
    assert pro_multi.route("vtrix").provider_model == "flux_kontext_pro"
    assert CAT.get("black-forest-labs/flux-kontext-max").route("wavespeed").price_micros == 80_000


def test_parameters_exactly_as_the_seeds_give_them():
    pro = CAT.get("black-forest-labs/flux-kontext-pro")  # seed 001
    assert pro.params["guidance"].maximum == 20 and pro.params["steps"].default == 20
    assert pro.params["strength"].default == 0.8 and "aspect_ratio" not in pro.params
    max_multi = CAT.get("black-forest-labs/flux-kontext-max/multi")  # seed 000
    assert set(max_multi.params) == {"n", "aspect_ratio", "seed", "steps", "guidance", "negative_prompt"}
    assert max_multi.params["guidance"].maximum == 10
    dev = CAT.get("black-forest-labs/flux.1-dev")  # seed 002
    assert dev.params["steps"].default == 28 and dev.params["size"].default == "1024x1024"
    assert CAT.get("stepfun-ai/step1x-edit").params["negative_prompt"].default is None
    assert set(CAT.get("black-forest-labs/flux-kontext-max").params) == {"seed", "guidance"}
    t2i = CAT.get("black-forest-labs/flux-kontext-pro/text-to-image")
    assert t2i.params["aspect_ratio"].choices == ASPECT_RATIOS
    assert t2i.params["seed"].maximum == 9_999_999_999


@pytest.mark.parametrize(
    ("model", "images", "params", "needle"),
    [
        ("nope/model", 0, {}, "Unknown model"),
        ("black-forest-labs/flux-kontext-max", 2, {}, "exactly 1 input image; you gave 2"),
        ("black-forest-labs/flux-kontext-pro/multi", 1, {}, "2 to 4 input images; you gave 1"),
        ("black-forest-labs/flux-kontext-pro/text-to-image", 1, {}, "exactly 0 input images"),
        ("black-forest-labs/flux-kontext-max", 1, {"steps": 10}, "steps is not supported"),
        ("black-forest-labs/flux-kontext-pro", 1, {"steps": 51}, "integer from 1 to 50"),
        ("black-forest-labs/flux-kontext-pro", 1, {"guidance": 20.5}, "number from 1 to 20"),
        ("black-forest-labs/flux-kontext-max/multi", 2, {"guidance": 11}, "number from 1 to 10"),
        ("black-forest-labs/flux-kontext-pro/text-to-image", 0, {"aspect_ratio": "5:4"}, "one of 21:9"),
        ("black-forest-labs/flux-kontext-pro/text-to-image", 0, {"n": 5}, "integer from 1 to 4"),
        ("black-forest-labs/flux.1-dev", 0, {"size": "2048x2048"}, "256 to 1536"),
        ("black-forest-labs/flux.1-dev", 0, {"seed": 10_000_000_000}, "from -1 to 9999999999"),
        ("black-forest-labs/flux.1-dev", 0, {"steps": "ten"}, "integer"),
        ("black-forest-labs/flux.1-dev", 0, {"guidance": float("nan")}, "number"),
    ],
)
def test_broken_rules_are_refused_with_what_is_allowed(model, images, params, needle):
    with pytest.raises(ValidationError) as info:
        CAT.validate(model, "a cat", images, params)
    assert needle in info.value.user_message


def test_prompt_rules():
    with pytest.raises(ValidationError, match="prompt is required"):
        CAT.validate("black-forest-labs/flux.1-dev", "   ", 0, {})
    with pytest.raises(ValidationError, match="at most 2000"):
        CAT.validate("black-forest-labs/flux.1-dev", "x" * 10_000, 0, {})


def test_defaults_filled_and_only_explicit_values_bind_routes():
    job = CAT.validate("flux-kontext-pro", "sketch", 1, {"n": 1, "seed": -1, "steps": None, "guidance": 3})
    assert job.model.id == "black-forest-labs/flux-kontext-pro"  # short names are accepted
    assert job.params["steps"] == 20 and job.params["guidance"] == 3.0
    assert job.explicit == {"guidance": 3.0}


def test_routes_skip_providers_that_cannot_carry_the_request():
    job = CAT.validate("black-forest-labs/flux-kontext-pro", "x", 1, {"guidance": 15})
    # vtrix caps guidance at 10, wavespeed carries guidance up to 20
    assert [r.provider for r in CAT.routes_for(job, ALL)] == ["modelverse", "wavespeed"]
    job = CAT.validate("black-forest-labs/flux-kontext-pro", "x", 1, {"n": 3})
    assert [r.provider for r in CAT.routes_for(job, ALL)] == ["modelverse"]
    with pytest.raises(NoRouteError, match="at most 1 image"):
        CAT.routes_for(job, ["vtrix"])
    with pytest.raises(NoRouteError, match="No enabled provider serves stepfun-ai/step1x-edit"):
        CAT.routes_for(CAT.validate("stepfun-ai/step1x-edit", "x", 1, {}), ["vtrix"])
    with pytest.raises(NoRouteError, match="not enabled"):
        CAT.routes_for(job, ["modelverse"], provider="wavespeed")
    assert [r.provider for r in CAT.routes_for(job, [], provider=SANDBOX)] == [SANDBOX]


def test_overrides_reorder_routes_and_change_prices_and_quota():
    cat = CAT.with_overrides(
        {
            "black-forest-labs/flux-kontext-pro": {
                "routes": ["vtrix", "modelverse"],
                "free_quota": 2,
                "prices": {"vtrix": "0.035"},
            }
        }
    )
    pro = cat.get("black-forest-labs/flux-kontext-pro")
    assert [r.provider for r in pro.routes] == ["vtrix", "modelverse", SANDBOX]
    assert pro.free_quota == 2 and pro.route("vtrix").price_micros == 35_000


def test_money_is_integer_micro_dollars():
    assert usd_to_micros("0.08") == 80_000
    assert usd_to_micros(0.1) + usd_to_micros(0.2) == usd_to_micros("0.3")
    assert micros_to_usd(48_612) == "$0.048612"
    assert micros_to_usd(40_000) == "$0.04"
    assert micros_to_usd(2_000_000) == "$2.00"
    with pytest.raises(ValueError):
        usd_to_micros("-1")


def test_the_image_count_is_named_as_people_meet_it():
    with pytest.raises(ValidationError) as info:
        CAT.validate("black-forest-labs/flux-kontext-max", "x", 1, {"n": 2})
    assert info.value.user_message.startswith("count (n) is not supported")
    with pytest.raises(ValidationError, match=r"count \(n\) must be an integer from 1 to 4"):
        CAT.validate("black-forest-labs/flux-kontext-pro/text-to-image", "x", 0, {"n": 7})
