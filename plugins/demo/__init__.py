"""Journeys for ``sceneos demo`` (entry point ``demo``)."""
