"""Training: a scorecard trained by optbinning scores the same applicants to the same points in
SceneOS's engine; the training command runs on the real data set and reports Gini and KS."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from middle.credit import training
from middle.credit.cli import cli
from middle.credit.scorecard import Scaling, load_scorecard, points_inconsistencies

# optbinning 1.0 uses pandas idioms that pandas 3 deprecates.
pytestmark = pytest.mark.filterwarnings(r"ignore::DeprecationWarning:optbinning(\..*)?")

SCALING = Scaling(base_score=600, base_odds=50, pdo=20)


@pytest.fixture(scope="module")
def german():
    return training.load_german_credit()


@pytest.fixture(scope="module")
def trained(german):
    """optbinning's own scorecard on a 600-row sample, and SceneOS's conversion of it."""
    facts, label = german
    sample = facts.sample(n=600, random_state=7)
    optimal = training.fit_optbinning(sample, label.loc[sample.index], training.GERMAN_CREDIT_FEATURES, SCALING)
    ours = training.from_optbinning(
        optimal, name="sample", version="1", scaling=SCALING,
        reasons={m.fact: m.reason for m in training.GERMAN_CREDIT_FEATURES},
        kinds={m.fact: m.kind for m in training.GERMAN_CREDIT_FEATURES},
    )
    return optimal, ours


def optbinning_input(frame: pd.DataFrame) -> pd.DataFrame:
    categorical = [m.fact for m in training.GERMAN_CREDIT_FEATURES if m.kind == "categorical"]
    return frame.astype({c: object for c in categorical})


def test_sceneos_scores_every_applicant_to_optbinnings_points(german, trained) -> None:
    facts, _ = german
    optimal, ours = trained
    expected = optimal.score(optbinning_input(facts))  # all 1,000 applicants, 400 never seen in training
    got = training.scores_of(ours.compiled(), facts)
    assert np.array_equal(got, expected)


def test_each_features_points_match_optbinnings_table(trained) -> None:
    optimal, ours = trained
    table = optimal.table(style="detailed")
    for feature in ours.features:
        rows = table[table.Variable == feature.name]
        regular = [int(p) for p in rows.Points.iloc[: len(rows) - 2]]
        missing = int(rows.Points.iloc[-1])
        assert [b.points for b in feature.bins if not b.missing] == regular
        assert next(b.points for b in feature.bins if b.missing) == missing
    assert points_inconsistencies(ours) == []


def test_missing_and_unseen_values_score_as_optbinning_scores_them(german, trained) -> None:
    facts, _ = german
    optimal, ours = trained
    odd = facts.head(6).copy()
    odd.loc[odd.index[0], "age_years"] = np.nan
    odd.loc[odd.index[1], "housing"] = np.nan
    odd.loc[odd.index[2], "occupation"] = "astronaut"  # a category training never saw
    odd.loc[odd.index[3], "bureau.credit_history"] = "unheard_of"
    odd.loc[odd.index[4], "age_years"] = 200
    expected = optimal.score(optbinning_input(odd))
    assert np.array_equal(training.scores_of(ours.compiled(), odd), expected)


def test_the_scorecard_file_round_trips_and_scores_the_same(tmp_path, german, trained) -> None:
    facts, _ = german
    _, ours = trained
    path = tmp_path / "sample.json"
    path.write_text(ours.to_json(), encoding="utf-8")
    loaded = load_scorecard(str(path))
    sample = facts.head(50)
    assert np.array_equal(training.scores_of(loaded.compiled(), sample), training.scores_of(ours.compiled(), sample))


def test_gini_and_ks_of_a_perfect_and_a_useless_score() -> None:
    bad = np.array([1, 1, 0, 0, 0, 0])
    assert training.gini_ks(bad, np.array([1, 2, 3, 4, 5, 6])) == (1.0, 1.0)
    gini, _ = training.gini_ks(bad, np.array([5, 5, 5, 5, 5, 5]))
    assert gini == 0.0


def test_unmapped_categories_are_an_error() -> None:
    raw = pd.DataFrame({"housing": ["own", "castle"]})
    mapping = next(m for m in training.GERMAN_CREDIT_FEATURES if m.fact == "housing")
    with pytest.raises(ValueError, match="castle"):
        training.map_columns(raw, [mapping])


def test_the_training_command_on_the_shipped_data_reports_gini_and_ks(tmp_path) -> None:
    out = tmp_path / "card.json"
    result = CliRunner().invoke(cli, ["train", "--out", str(out), "--version", "test"])
    assert result.exit_code == 0, result.output
    assert "hold-out (300 rows): Gini" in result.output and "KS" in result.output
    card = load_scorecard(str(out))
    assert card.id == "default@test"
    assert card.training["rows"] == 1000
    assert 0.4 < card.training["gini_holdout"] < 0.8
    assert 0.3 < card.training["ks_holdout"] < 0.7
    # Protected characteristics and loan-only facts never become features.
    names = {f.name for f in card.features}
    assert not names & {"personal_status_and_sex", "foreign_worker", "credit_amount", "duration_in_month"}


def test_the_training_command_takes_a_banks_own_data(tmp_path, german) -> None:
    facts, label = german
    frame = facts[["age_years", "housing", "bureau.checking_status"]].copy()
    frame["defaulted"] = label.map({1: "yes", 0: "no"})
    data = tmp_path / "bank.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "bank.json"
    result = CliRunner().invoke(cli, ["train", "--out", str(out), "--data", str(data), "--target", "defaulted",
                                      "--bad-value", "yes", "--name", "bank_a", "--sample", "400"])
    assert result.exit_code == 0, result.output
    card = json.loads(out.read_text(encoding="utf-8"))
    assert card["name"] == "bank_a" and card["training"]["rows"] == 400
    assert {f["name"] for f in card["features"]} <= {"age_years", "housing", "bureau.checking_status"}


def test_the_engine_needs_no_data_science_library() -> None:
    """The credit module imports and scores with pandas, numpy, scikit-learn and optbinning absent."""
    code = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"pandas", "numpy", "sklearn", "optbinning", "scorecardpy", "scipy"}:
                    raise ImportError(f"blocked {name}")
                return None

        sys.meta_path.insert(0, Block())
        import middle.credit.plugin
        from middle.credit.scorecard import load_scorecard

        outcome = load_scorecard("default").score({"age_years": 40, "housing": "own"})
        print(outcome.score)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) > 0
