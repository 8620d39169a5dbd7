"""The credit service on real databases: profiles, scores, offers, and per-bank strategies."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from core.errors import ConfigError, NotFound, ValidationFailed
from core.hookspecs import hookimpl
from core.testing.factories import mobile, resident_id
from core.testing.harness import tenant_config
from middle.credit.models import CreditProfileRecord
from middle.credit.service import CreditProfile, Pricing, daily_rate_of
from middle.credit.settings import CreditSettings
from middle.party.service import CustomerDraft

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)

# A bureau report that puts a 40-year-old skilled home owner in band A of the default scorecard.
STRONG_REPORT = {
    "checking_status": "none",
    "savings_band": "1000_plus",
    "credit_history": "critical",
    "other_installment_plans": "none",
    "property": "real_estate",
}
STRONG_CONSENT = {
    "income_band": "5k_10k",
    "occupation": "skilled",
    "employment_band": "4y_7y",
    "housing": "own",
    "bureau_authorized": True,
}


class ProductHistory:
    """Stands for a product that knows the customer's lines (a product plugin in real life)."""

    def __init__(self, **report):
        self.report = report

    @hookimpl
    def sceneos_credit_internal_history(self, customer_no):
        return dict(self.report)


class HalfLines:
    """A bank's stricter limit strategy: half of the band's line, nothing for band C and below."""

    @hookimpl
    def sceneos_credit_limit_strategy(self, band):
        return band.max_line_minor // 2 if band.name in ("A", "B") else 0


class SettablePricing:
    def __init__(self):
        self.answer = None
        self.line = None

    @hookimpl
    def sceneos_credit_limit_strategy(self):
        return self.line

    @hookimpl
    def sceneos_credit_pricing_strategy(self):
        return self.answer


def credit_tenant(name="Bank", *, plugins=("fake_bureau",), credit=None, **extra):
    return tenant_config(name, modules={"party": {}, "credit": credit or {}}, plugins=list(plugins), **extra)


def register(app, tenant_id="bank", *, birth=date(1986, 5, 20), seq=1):
    tenant = app.tenant(tenant_id)
    draft = CustomerDraft(name="Wang Wu", id_number=resident_id(birth, sequence=seq), phone=mobile(seq))
    with tenant.unit_of_work() as uow:
        return tenant.module("party").container.service(uow=uow).register(draft).customer.customer_no


def pin_report(customer_no, report=STRONG_REPORT):
    return {"fake_bureau": {"reports": {customer_no: report}}}


def assess(app, customer_no, consented=None, tenant_id="bank"):
    tenant = app.tenant(tenant_id)
    with tenant.unit_of_work() as uow:
        return tenant.module("credit").container.service(uow=uow).assess(customer_no, consented)


@BOTH
def test_profile_reads_identity_from_the_party_registry_and_keeps_consented_data(make_sceneos) -> None:
    app = make_sceneos({"tenants": {"bank": credit_tenant()}})
    customer_no = register(app)
    result = assess(
        app,
        customer_no,
        {
            "income_band": "3k_5k",
            "order_count_90d": 12,
            "order_amount_90d_minor": 372_000,
            "extra": {"vip": True},
        },
    )
    profile = result.profile
    assert (profile.customer_no, profile.age_years, profile.region_code, profile.gender) == (
        customer_no,
        39,
        "110105",
        "male",
    )
    assert profile.as_of == date(2026, 1, 1)
    assert profile.order_amount_90d_minor == 372_000
    assert profile.facts()["extra.vip"] is True
    assert profile.bureau is None  # not authorized
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        stored = tenant.module("credit").container.service(uow=uow).stored_consented(customer_no)
    assert stored.income_band == "3k_5k" and stored.order_count_90d == 12
    assess(app, customer_no, {"income_band": "10k_20k"})
    with tenant.unit_of_work() as uow:
        assert (
            tenant.module("credit").container.service(uow=uow).stored_consented(customer_no).income_band
            == "10k_20k"
        )


def test_unknown_customers_and_bad_consented_data_are_refused(make_sceneos) -> None:
    app = make_sceneos({"tenants": {"bank": credit_tenant()}})
    customer_no = register(app)
    with pytest.raises(NotFound):
        assess(app, "cus_nobody")
    with pytest.raises(ValidationFailed) as invalid:
        assess(app, customer_no, {"order_count_90d": -1, "salary": 9000})
    fields = {d["field"] for d in invalid.value.details}
    assert fields == {"consented.order_count_90d", "consented.salary"}
    with pytest.raises(ValidationFailed) as unknown_band:
        assess(app, customer_no, {"income_band": "a_lot"})
    assert unknown_band.value.details[0]["code"] == "unknown_income_band"
    with pytest.raises(ValidationFailed, match="finite"):
        assess(app, customer_no, {"extra": {"ratio": float("nan")}})


@BOTH
def test_internal_history_is_merged_over_products(make_sceneos) -> None:
    plugins = {
        "card_product": ProductHistory(
            existing_line_minor=500_000,
            outstanding_minor=100_000,
            max_days_past_due=3,
            existing_credit_count=1,
            on_time_repayments=10,
        ),
        "loan_product": ProductHistory(
            existing_line_minor=300_000,
            outstanding_minor=300_000,
            max_days_past_due=31,
            current_days_past_due=2,
            existing_credit_count=1,
            late_repayments=1,
        ),
    }
    app = make_sceneos(
        {"tenants": {"bank": credit_tenant(plugins=["card_product", "loan_product"])}}, plugins=plugins
    )
    profile = assess(app, register(app)).profile
    assert profile.existing_line_minor == 800_000
    assert profile.outstanding_minor == 400_000
    assert profile.utilization_bps == 5_000
    assert profile.existing_credit_count == 2
    assert (profile.max_days_past_due, profile.current_days_past_due) == (31, 2)
    assert (profile.on_time_repayments, profile.late_repayments) == (10, 1)


def test_a_malformed_internal_history_report_is_refused(make_sceneos) -> None:
    plugins = {"broken_product": ProductHistory(existing_line_minor=-5)}
    app = make_sceneos({"tenants": {"bank": credit_tenant(plugins=["broken_product"])}}, plugins=plugins)
    with pytest.raises(ValidationFailed) as invalid:
        assess(app, register(app))
    assert invalid.value.details[0]["field"] == "internal_history.existing_line_minor"


def test_the_bureau_is_asked_only_with_the_customers_authorization_and_when_enabled(make_sceneos) -> None:
    app = make_sceneos(
        {
            "tenants": {
                "bank": credit_tenant(),
                "no_bureau": credit_tenant(credit={"fetch_bureau": False}),
            }
        }
    )
    customer_no = register(app)
    assert assess(app, customer_no, {"bureau_authorized": False}).profile.bureau is None
    report = assess(app, customer_no, {"bureau_authorized": True}).profile.bureau
    assert report["source"] == "fake_bureau" and set(report) > {"checking_status", "credit_history"}
    assert assess(app, customer_no, {"bureau_authorized": True}).profile.bureau == report  # deterministic
    other = register(app, "no_bureau")
    assert assess(app, other, {"bureau_authorized": True}, tenant_id="no_bureau").profile.bureau is None


def test_without_a_bureau_record_the_scorecard_says_so(make_sceneos) -> None:
    customer_no = register(make_sceneos({"tenants": {"bank": credit_tenant()}}))
    # The same database, with the bureau knowing nothing of this customer.
    app = make_sceneos(
        {"tenants": {"bank": credit_tenant(plugin_config={"fake_bureau": {"no_record": [customer_no]}})}}
    )
    result = assess(app, customer_no, {"bureau_authorized": True})
    assert result.profile.bureau is None
    bureau_bins = {
        name: label for name, label in result.score.bins_by_feature.items() if name.startswith("bureau.")
    }
    assert bureau_bins and set(bureau_bins.values()) == {"Missing or other"}
    assert ("CR90", "No credit report was available") in result.score.reasons
    assert len(result.score.reasons) <= 4


@BOTH
def test_score_and_default_offer(make_sceneos) -> None:
    customer_no = register(make_sceneos({"tenants": {"bank": credit_tenant()}}))
    app = make_sceneos({"tenants": {"bank": credit_tenant(plugin_config=pin_report(customer_no))}})
    result = assess(app, customer_no, STRONG_CONSENT)
    score = result.score
    assert score.scorecard_version == "default@1"
    assert score.score == sum(score.points_by_feature.values())
    assert score.score >= 560 and isinstance(score.probability_of_default, Decimal)
    offer = result.offer
    # Band A: min(30,000 CNY, 3 x 5,000 CNY monthly income) = 15,000 CNY at 10.8 % a year.
    assert (offer.score_band, offer.line_minor, offer.currency) == ("A", 1_500_000, "CNY")
    assert (offer.annual_rate_bps, offer.fee_rate_bps) == (1080, 0)
    assert offer.daily_rate == Decimal("0.00029589")
    assert offer.strategy_version == "limit=credit;pricing=credit;config=1"


def test_a_low_score_gets_no_offer_and_reasons(make_sceneos) -> None:
    weak = {
        "checking_status": "negative",
        "savings_band": "lt_100",
        "credit_history": "all_paid_here",
        "other_installment_plans": "bank",
        "property": "none",
    }
    customer_no = register(make_sceneos({"tenants": {"bank": credit_tenant()}}), birth=date(2004, 2, 1))
    app = make_sceneos({"tenants": {"bank": credit_tenant(plugin_config=pin_report(customer_no, weak))}})
    result = assess(
        app, customer_no, {"employment_band": "unemployed", "housing": "rent", "bureau_authorized": True}
    )
    assert result.score.score < 485 and result.offer is None
    assert len(result.score.reasons) == 4
    assert result.score.reasons[0].code.startswith("CR")


@BOTH
def test_a_bank_plugin_replaces_the_limit_strategy_for_its_tenant_only(make_sceneos) -> None:
    config = {
        "tenants": {
            "bank_a": credit_tenant("Bank A", plugins=["fake_bureau", "bank_a_limits"]),
            "bank_b": credit_tenant("Bank B"),
        }
    }
    plain = {"tenants": {"bank_b": credit_tenant("Bank B")}}
    app = make_sceneos(config, plugins={"bank_a_limits": HalfLines()})
    customers = {
        tenant: [register(app, tenant, seq=seq, birth=date(1970 + seq, 1, 9)) for seq in range(1, 9)]
        for tenant in ("bank_a", "bank_b")
    }
    # The fake bureau makes a report up from the (random) customer number: pin a strong one for
    # bank A's first customer, so that bank A always has an offer to check (the same database).
    config["tenants"]["bank_a"] = credit_tenant(
        "Bank A", plugins=["fake_bureau", "bank_a_limits"], plugin_config=pin_report(customers["bank_a"][0])
    )
    app = make_sceneos(config, plugins={"bank_a_limits": HalfLines()})
    consents = [
        {**STRONG_CONSENT, "income_band": band} for band in ("20k_plus", "10k_20k", "5k_10k", "3k_5k")
    ] * 2
    offers_a = [
        assess(app, c, consent, "bank_a").offer
        for c, consent in zip(customers["bank_a"], consents, strict=True)
    ]
    offers_b = [
        assess(app, c, consent, "bank_b").offer
        for c, consent in zip(customers["bank_b"], consents, strict=True)
    ]
    # Bank B without bank A's plugin at all: the same offers as in the shared application.
    alone = make_sceneos(plain)  # the same database
    offers_b_alone = [
        assess(alone, c, consent, "bank_b").offer
        for c, consent in zip(customers["bank_b"], consents, strict=True)
    ]
    assert offers_b == offers_b_alone
    assert all(o is None or o.strategy_version.startswith("limit=credit;") for o in offers_b)
    # Bank A's offers come from its plugin: half the band's line, none below band B.
    assert any(o is not None for o in offers_a)
    for offer in offers_a:
        if offer is not None:
            assert offer.strategy_version.startswith("limit=bank_a_limits;pricing=credit;")
            assert offer.score_band in ("A", "B")
            assert offer.line_minor in (1_500_000, 750_000)


def test_caps_and_the_rate_ceiling_bound_whatever_the_hooks_answer(make_sceneos) -> None:
    strategy = SettablePricing()
    app = make_sceneos(
        {
            "tenants": {
                "bank": credit_tenant(
                    plugins=["settable"],
                    credit={
                        "max_line_minor": 2_000_000,
                        "max_total_exposure_minor": 2_500_000,
                        "min_line_minor": 100_000,
                        "annual_rate_ceiling_bps": 2400,
                    },
                )
            }
        },
        plugins={"settable": strategy},
    )
    profile = profile_of(existing_line_minor=1_000_000)
    strategy.line, strategy.answer = 9_999_999, Pricing(annual_rate_bps=3600, fee_rate_bps=500)
    offer = offer_for(app, profile)
    assert offer.line_minor == 1_500_000  # total exposure 2,500,000 less 1,000,000 existing
    assert (offer.annual_rate_bps, offer.fee_rate_bps) == (2400, 0)
    assert offer.daily_rate * 365 <= Decimal("0.24")
    strategy.line = 99_999  # below the minimum line: no offer
    assert offer_for(app, profile) is None
    strategy.line, strategy.answer = 500_000, None  # the bank's pricing passes: the default answers
    assert offer_for(app, profile).annual_rate_bps == 1080


def profile_of(**history) -> CreditProfile:
    return CreditProfile(
        customer_no="cus_test",
        as_of=date(2026, 1, 1),
        age_years=40,
        region_code="110105",
        gender="female",
        income_band="5k_10k",
        **history,
    )


def offer_for(app, profile, score_value=600):
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        service = tenant.module("credit").container.service(uow=uow)
        score = service.score(profile).model_copy(update={"score": score_value})
        return service.offer(profile, score)


def test_offers_never_exceed_caps_or_the_ceiling(make_sceneos) -> None:
    """Property: whatever a limit or pricing plugin answers, the offer respects the configuration."""
    strategy = SettablePricing()
    settings = {
        "max_line_minor": 3_000_000,
        "max_total_exposure_minor": 4_000_000,
        "min_line_minor": 50_000,
        "line_step_minor": 10_000,
        "annual_rate_ceiling_bps": 2400,
        "days_in_year": 360,
    }
    app = make_sceneos(
        {"tenants": {"bank": credit_tenant(plugins=["settable"], credit=settings)}},
        plugins={"settable": strategy},
    )

    @given(
        line=st.integers(min_value=0, max_value=10**10),
        rate=st.integers(min_value=0, max_value=50_000),
        fee=st.integers(min_value=0, max_value=50_000),
        existing=st.integers(min_value=0, max_value=6_000_000),
        score=st.integers(min_value=300, max_value=700),
    )
    def check(line, rate, fee, existing, score):
        strategy.line, strategy.answer = line, Pricing(annual_rate_bps=rate, fee_rate_bps=fee)
        offer = offer_for(app, profile_of(existing_line_minor=existing), score)
        if offer is None:
            return
        assert 50_000 <= offer.line_minor <= min(line, 3_000_000)
        assert offer.line_minor + existing <= 4_000_000
        assert offer.line_minor % 10_000 == 0
        assert offer.annual_rate_bps + offer.fee_rate_bps <= 2400
        assert offer.daily_rate * 360 <= Decimal(offer.annual_rate_bps) / 10_000

    check()


@given(rate=st.integers(min_value=0, max_value=100_000), days=st.sampled_from([360, 365]))
def test_the_daily_rate_never_annualizes_above_the_annual_rate(rate, days) -> None:
    daily = daily_rate_of(rate, days)
    assert daily * days <= Decimal(rate) / 10_000 < (daily + Decimal("0.00000001")) * days


def test_settings_are_checked_at_startup(make_sceneos) -> None:
    with pytest.raises(ConfigError, match="strictly decreasing"):
        make_sceneos(
            {
                "tenants": {
                    "bank": credit_tenant(
                        credit={
                            "score_bands": [
                                {"name": "A", "min_score": 500, "max_line_minor": 1, "annual_rate_bps": 1},
                                {"name": "B", "min_score": 600, "max_line_minor": 1, "annual_rate_bps": 1},
                            ]
                        }
                    )
                }
            }
        )
    with pytest.raises(ConfigError, match="neither a shipped scorecard"):
        make_sceneos({"tenants": {"bank": credit_tenant(credit={"scorecard": "missing-card"})}})
    with pytest.raises(ConfigError, match="needs module 'party'"):
        make_sceneos({"tenants": {"bank": tenant_config(modules={"credit": {}})}})
    assert CreditSettings().band_for(10**6).name == "A"


def test_profiles_and_scores_survive_a_json_round_trip(make_sceneos) -> None:
    """Decision records keep profiles and scores as JSON; read back, they score and offer the same."""
    from middle.credit.service import ScoreResult

    app = make_sceneos({"tenants": {"bank": credit_tenant()}})
    result = assess(app, register(app), {**STRONG_CONSENT, "extra": {"vip": True, "ratio": 0.5}})
    profile = CreditProfile.model_validate(result.profile.model_dump(mode="json"))
    assert profile == result.profile
    score = ScoreResult.model_validate(result.score.model_dump(mode="json"))
    assert score == result.score
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        service = tenant.module("credit").container.service(uow=uow)
        assert service.score(profile) == result.score
        assert service.offer(profile, score) == result.offer


def test_the_cli_checks_scorecards_and_assesses_a_customer(tmp_path) -> None:
    from typer.testing import CliRunner

    from middle.credit.cli import cli

    runner = CliRunner()
    checked = runner.invoke(cli, ["check", "default"])
    assert checked.exit_code == 0, checked.output
    assert "default@1" in checked.output and "gini_holdout" in checked.output
    config = tmp_path / "sceneos.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "cli.db"}"\n'
        '[tenants.bank]\nname = "Bank"\nplugins = ["fake_bureau"]\n'
        "[tenants.bank.modules.party]\n[tenants.bank.modules.credit]\n",
        encoding="utf-8",
    )
    from core.cli_support import open_app

    with open_app(str(config)) as app:
        customer_no = register(app)
    assessed = runner.invoke(
        cli,
        [
            "assess",
            customer_no,
            "--tenant",
            "bank",
            "--config",
            str(config),
            "--consented",
            '{"income_band": "5k_10k", "bureau_authorized": true}',
        ],
    )
    assert assessed.exit_code == 0, assessed.output
    assert "score" in assessed.output and "default@1" in assessed.output
    again = runner.invoke(cli, ["assess", customer_no, "--tenant", "bank", "--config", str(config)])
    assert again.exit_code == 0 and again.output == assessed.output  # the stored consented data


def test_the_fake_bureau_makes_up_the_same_plausible_report_for_a_customer() -> None:
    from plugins.fake_bureau.plugin import FACT_VALUES, made_up_report

    reports = [made_up_report(f"cus_{n}") for n in range(300)]
    assert made_up_report("cus_1") == reports[1]
    for fact, choices in FACT_VALUES.items():
        seen = {report[fact] for report in reports}
        assert seen <= {value for value, _ in choices} and len(seen) >= 2


@BOTH
def test_consented_data_is_upserted_per_bank_and_changes_only_when_the_data_does(
    make_sceneos, sim_clock
) -> None:
    app = make_sceneos({"tenants": {"bank": credit_tenant(), "other": credit_tenant("Other")}})
    ours, theirs = register(app), register(app, "other")
    assess(app, theirs, {"income_band": "5k_10k"}, tenant_id="other")
    first = sim_clock.now()
    assess(app, ours, {"income_band": "3k_5k"})
    sim_clock.advance(hours=1)
    assess(app, ours, {"income_band": "3k_5k"})  # the same data: the row is left alone

    def stored_rows():
        with app.system_unit_of_work() as session:
            return {
                (row.tenant_id, row.customer_no): (row.consented.get("income_band"), row.updated_at)
                for row in session.scalars(select(CreditProfileRecord))
            }

    assert stored_rows() == {("bank", ours): ("3k_5k", first), ("other", theirs): ("5k_10k", first)}
    tenant, somebody_else = app.tenant("bank"), register(app, seq=2)
    with tenant.unit_of_work() as uow:
        credit = tenant.module("credit").container.service(uow=uow)
        assert credit.stored_consented(ours).income_band == "3k_5k"  # loaded into this session
        credit.build_profile(ours, {"income_band": "10k_20k"})
        assert credit.stored_consented(ours).income_band == "10k_20k"  # not the session's stale copy
        # A party row for another customer is not taken for this one: the registry is read.
        other_row = tenant.module("party").container.service(uow=uow).get(somebody_else)
        assert credit.build_profile(ours, {}, customer=other_row).customer_no == ours
    assert stored_rows() == {("bank", ours): (None, sim_clock.now()), ("other", theirs): ("5k_10k", first)}
