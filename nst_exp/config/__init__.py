"""The config's typed schema, and the one check of a composed config.

- ``schema.py``/``groups.py``: dataclasses with typed fields (Enums for closed choices,
  ``choices.py``) that the YAML files extend (``store.py``), so Hydra checks keys and types
  while it composes; each has a ``check`` method with the ranges of its fields.
- ``check_config(cfg)``: runs those ``check`` methods once per run, before the run builds
  anything (train.py; the batched launcher per job), and returns the config with plain values
  (``plain``) for the run to use. Constructors downstream trust the values.
- ``errors.py``: Hydra's and OmegaConf's composition errors as one line (unknown key with the
  closest valid one, wrong type, unknown group choice with the choices).

Checks that need the data (image sizes, layer names of the chosen network) run where the data
is loaded, and raise the same ConfigError.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nst_exp.config.store import register_schemas

__all__ = ["check_config", "plain", "register_schemas"]


def check_config(cfg: DictConfig) -> DictConfig:
    """Run the ``check`` of every typed node of ``cfg``, groups before the top level's cross-checks;
    return ``plain(cfg)``, what the run uses from then on.

    A bad value raises ConfigError with one line that names the field and the value
    (``steps=0: must be an integer >= 1``). Each check gets the composed node as ``self`` and
    reads the fields it checks: interpolations elsewhere (``${hydra:...}``) are not resolved.
    """
    for schema, node in _typed_nodes(cfg):
        schema.check(node)
    return plain(cfg)


def plain(cfg: DictConfig) -> DictConfig:
    """``cfg`` with every Enum member turned back into its string, interpolations kept.

    The schema's Enums are for composing and checking; what runs gets plain values, so nothing
    of the schema reaches objects that are pickled (an optimiser's param groups, a checkpoint's
    fingerprint: ``torch.load(weights_only=True)`` refuses unknown classes) or sent elsewhere.
    """
    values = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False, enum_to_str=True))
    OmegaConf.set_struct(values, OmegaConf.is_struct(cfg))  # a typo'd key still raises, as in Hydra's
    return values


def _typed_nodes(node: DictConfig) -> Iterator[tuple[Any, DictConfig]]:
    """(schema, node) for ``node`` and the typed nodes below it, children first."""
    for key in node:
        if OmegaConf.is_interpolation(node, str(key)) or OmegaConf.is_missing(node, str(key)):
            continue
        child = node[key]
        if isinstance(child, DictConfig):
            yield from _typed_nodes(child)
    schema = OmegaConf.get_type(node)
    if dataclasses.is_dataclass(schema) and hasattr(schema, "check"):
        yield schema, node
