"""SceneOS plugins layer."""
