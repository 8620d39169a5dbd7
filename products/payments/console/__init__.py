"""The cashier console: the ticket window's web page, served by ``sceneos serve``.

Mounted by the kernel at ``/web/{tenant_id}/payments/`` (``ModuleSpec.web``), outside the API and
without the bank's admin key: operators sign in with employee number, PIN and terminal and get a
signed session cookie. See ``docs/cashier-console.md``.
"""
