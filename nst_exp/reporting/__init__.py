"""Read a finished (or running) multirun from its files and report on it."""
