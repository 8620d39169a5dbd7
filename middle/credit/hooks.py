"""Hookspecs of the credit module: where products feed it and where a bank customizes it.

Like every module hook they run per tenant, so a bank's plugin changes that bank's credit only.
The built-in limit and pricing strategies are implementations of these hooks marked
``trylast=True`` (``middle/credit/plugin.py``): a bank's plugin that answers is called first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.hookspecs import hookspec

if TYPE_CHECKING:
    from core.tenancy import Tenant
    from middle.credit.service import CreditProfile, Pricing, ScoreResult
    from middle.credit.settings import CreditSettings, ScoreBand


# -------------------------------------------------------------------------------------------------
# Profile: what the products and the bureau know about a customer
# -------------------------------------------------------------------------------------------------


@hookspec
def sceneos_credit_internal_history(tenant: Tenant, customer_no: str) -> dict[str, Any] | None:  # type: ignore[empty-body]
    """Report what a product knows of the customer's credit at this bank.

    Called once per credit profile built (every activation decision), before the bureau is asked.
    Answer fast: it runs inside the decision.

    :param tenant: the bank.
    :param customer_no: the customer (party registry number).
    :return: a dict with any of ``existing_line_minor``, ``outstanding_minor``,
        ``existing_credit_count``, ``max_days_past_due``, ``current_days_past_due``,
        ``on_time_repayments``, ``late_repayments`` (non-negative ints), or None if the product
        knows nothing of the customer. Collected: amounts and counts are summed over the products,
        days past due take the worst; ``utilization_bps`` is derived, not reported.
    """


@hookspec(firstresult=True)
def sceneos_credit_fetch_bureau_report(tenant: Tenant, profile: CreditProfile) -> dict[str, Any] | None:
    """Fetch the customer's credit report from a bureau and return its facts.

    Called once per credit profile built, after identity, consented data and internal history
    are known, and only when the module's ``fetch_bureau`` setting is on and the customer
    authorized the query (consented ``bureau_authorized``). Stops at first non-None result.

    :param tenant: the bank (read the plugin's configuration with ``tenant.plugin_config``).
    :param profile: the profile so far (``profile.bureau`` is None).
    :return: a flat dict of facts (str, int, float, bool or None values), available to scorecards
        and rules as ``bureau.<key>``; or None when no report was found or the bureau is down
        (the profile then has no bureau facts and scorecards use their missing bins).
    """


# -------------------------------------------------------------------------------------------------
# Offer: the line and the price
# -------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def sceneos_credit_limit_strategy(
    tenant: Tenant, profile: CreditProfile, score: ScoreResult, band: ScoreBand, settings: CreditSettings
) -> int | None:
    """Decide the credit line to offer.

    Called once per offer, after the profile is scored and only if the score falls in a band.
    The built-in strategy (``trylast``) takes the band's ``max_line_minor``, bounded by the
    consented monthly income times the band's ``income_multiple_pct``, less existing lines. The
    caps from settings apply to whatever is answered. Stops at first non-None result.

    :param tenant: the bank.
    :param profile: the customer's credit profile.
    :param score: the scorecard's result for that profile.
    :param band: the score band (settings ``score_bands``) the score falls in.
    :param settings: the credit module's settings for this bank.
    :return: the line in the tenant currency's minor units (int; 0 for no line), or None to let
        the next strategy decide.
    """


@hookspec(firstresult=True)
def sceneos_credit_pricing_strategy(
    tenant: Tenant,
    profile: CreditProfile,
    score: ScoreResult,
    band: ScoreBand,
    line_minor: int,
    settings: CreditSettings,
) -> Pricing | None:
    """Price the offered line.

    Called once per offer, after the line is decided and capped (not called when there is no
    line). The built-in strategy (``trylast``) answers the band's ``annual_rate_bps`` and
    ``fee_rate_bps``. The settings' ``annual_rate_ceiling_bps`` then bounds the annual rate, and
    the annual rate plus the fee rate. Stops at first non-None result.

    :param tenant: the bank.
    :param profile: the customer's credit profile.
    :param score: the scorecard's result.
    :param band: the score band.
    :param line_minor: the line being offered (after caps).
    :param settings: the credit module's settings for this bank.
    :return: a :class:`middle.credit.service.Pricing`, or None to let the next strategy decide.
    """
