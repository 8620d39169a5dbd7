"""SceneOS kernel: contracts every layer builds on (settings, clock, plugins, modules, storage, events)."""

__version__ = "0.1.0"
