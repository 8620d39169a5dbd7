"""Fixtures of the risk tests; the helpers are in ``tests/risk/support.py``."""

from __future__ import annotations

import pytest

from tests.risk.support import EventRecorder


@pytest.fixture
def events() -> EventRecorder:
    return EventRecorder()
