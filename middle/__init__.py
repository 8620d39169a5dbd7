"""SceneOS middle layer."""
