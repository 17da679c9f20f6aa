"""Hydra launcher plugin: sweep jobs side by side, each in its own contained process."""
