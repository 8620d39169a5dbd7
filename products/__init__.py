"""SceneOS products layer."""
