"""Read a finished (or running) multirun from its files and report on it (nst-report); score any
image on the yardstick's ruler (nst-score)."""
