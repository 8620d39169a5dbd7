"""Scorecards shipped with SceneOS (``<name>.json``), chosen by the ``scorecard`` setting."""
