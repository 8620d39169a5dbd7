"""The super entry: how partner platforms reach the bank's products through one HTTP API.

Partners (from configuration and the admin API/CLI) sign every request; the entry authenticates
them, resolves partner -> tenant -> module, checks scopes, rate-limits, makes every POST idempotent,
keeps end users and their consents, and turns domain events into signed webhooks. Products declare
their routes once (``ModuleSpec.router``) and never see any of this.
"""
