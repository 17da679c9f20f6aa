"""Config-group choices checked before Hydra composes: one line and exit 2, like any bad input.

Hydra reports ``optimizer=nope`` in 11 lines (the search path included) and exits 1; this says

    error: optimizer=nope: no such choice; choices: adam, lbfgs

The choices are what Hydra itself would find (its config loader over the shipped configs,
installed plugins and any ``--config-dir``), so a new optimizer file or sweeper plugin counts
at once. Anything this cannot judge (bad syntax, globs, a custom ``hydra.searchpath``) is left
to Hydra.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException

from nst_exp.errors import ConfigError

CONFIG_DIR_FLAGS = ("--config-dir", "-cd")


def _config_dirs(args: list[str]) -> list[Path]:
    """Directories given with ``--config-dir DIR``, ``-cd DIR`` or ``--config-dir=DIR``."""
    dirs = []
    for index, arg in enumerate(args):
        if arg in CONFIG_DIR_FLAGS and index + 1 < len(args):
            dirs.append(Path(args[index + 1]))
        elif arg.startswith("--config-dir="):
            dirs.append(Path(arg.split("=", 1)[1]))
    return dirs


def _overrides(args: list[str]) -> Iterator[Override]:
    """The ``key=value`` arguments Hydra's parser accepts (flags and their values skipped)."""
    parser = OverridesParser.create()
    for index, arg in enumerate(args):
        if arg.startswith("-") or "=" not in arg or (index and args[index - 1] in CONFIG_DIR_FLAGS):
            continue
        try:
            yield from parser.parse_overrides([arg])
        except HydraException:  # bad syntax: Hydra's own message says where
            continue


def _names(override: Override) -> list[str]:
    """The config names an override picks (a sweep picks several); [] for what cannot be told."""
    if override.is_delete() or (override.is_sweep_override() and not override.is_discrete_sweep()):
        return []
    if override.is_sweep_override():
        return list(override.sweep_string_iterator())
    value = override.value()
    values = value if isinstance(value, list) else [value]
    return [v for v in values if isinstance(v, str) and v != "null" and "/" not in v]


def check_group_choices(args: list[str], config_dir: Path) -> None:
    """Raise ConfigError for the first ``group=name`` whose group has no config ``name``."""
    if any("hydra.searchpath" in arg for arg in args):
        return
    picks = [(o.key_or_group, name) for o in _overrides(args) for name in _names(o) if "." not in o.key_or_group]
    if not picks:
        return
    extra = _config_dirs(args)
    with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        for group, name in picks:
            choices = set(loader.get_group_options(group))
            choices |= {p.stem for d in extra for p in (d / group).glob("*.yaml")}
            if choices and name not in choices:
                raise ConfigError(f"{group}={name}: no such choice; choices: {', '.join(sorted(choices))}")
