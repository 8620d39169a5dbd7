"""Risk control: the bank's rules, decision flows, anti-fraud checks, champion/challenger, decision
records with replay, and the manual review queue (journeys 2, 3 and 6).

Products call :class:`middle.risk.service.RiskService` (``decide_activation``,
``authorize_purchase``, ``screen_payment``); the activation flow's scorecard and limit/pricing steps
call the credit module. Rules are CEL expressions declared in configuration or by a bank's plugin
(``sceneos_risk_rules``), compiled at startup. Partners only ever see outcomes and reason codes.
Shape: settings, models, service, hooks, cli, jobs, container, plugin (see ``docs/risk.md``).
"""
