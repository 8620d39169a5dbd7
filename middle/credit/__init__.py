"""Credit system: a customer's credit profile, a scorecard engine, and limit and pricing strategies.

The bank's middle tier (journeys 2, 3 and 6): products and the risk module call
:class:`middle.credit.service.CreditService`; partners only ever see decisions. A scorecard is data
(``scorecards/*.json``, see :mod:`middle.credit.scorecard`); ``sceneos credit train`` builds one from
labelled data. Limit, pricing, internal history and bureau reports are hooks (``hooks.py``), so a
bank replaces them in a plugin. Shape: settings, models, service, hooks, cli, container, plugin.

Importing this package needs no data-science library; only the training command does
(``pip install 'sceneos[training]'``).
"""
