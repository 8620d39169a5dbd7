"""SceneOS infra layer."""
