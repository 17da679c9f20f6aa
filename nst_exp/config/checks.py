"""Range checks for the schema's ``check`` methods: each raises ConfigError naming field and value.

The types are Hydra's to check while it composes; these say what a well-typed value may be.
"""

from __future__ import annotations

import math
from typing import Any

from nst_exp.errors import ConfigError


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def shown(value: Any) -> str:
    """A number as the user typed it: a float field holds ``-1`` as -1.0, shown as -1."""
    text = repr(value)
    return text[:-2] if isinstance(value, float) and text.endswith(".0") else text


def at_least(field: str, value: Any, low: float, strict: bool = False, note: str = "") -> None:
    """A finite number >= ``low`` (> with ``strict``); ``note`` ends the message (``or null ...``)."""
    if not finite(value) or value < low or (strict and value == low):
        raise ConfigError(f"{field}={shown(value)}: must be a finite number {'>' if strict else '>='} {low:g}{note}")


def integer(field: str, value: Any, low: int, high: int | None = None, note: str = "") -> None:
    """An integer in [low, high] (no upper bound without ``high``)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        span = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigError(f"{field}={shown(value)}: must be an integer {span}{note}")


def within(field: str, value: Any, interval: str) -> None:
    """A number in ``interval``, written as in the message: ``"[0, 1]"``, ``"(0, 1)"``, ``"[0, 1)"``."""
    low, high = (float(bound) for bound in interval[1:-1].split(","))
    ok = finite(value) and (low <= value if interval[0] == "[" else low < value) and (
        value <= high if interval[-1] == "]" else value < high)
    if not ok:
        raise ConfigError(f"{field}={shown(value)}: must be a number in {interval}")


def int_list(values: Any, minimum: int) -> bool:
    """Is ``values`` a non-empty list of integers (not bools) >= ``minimum``?"""
    try:
        items = list(values)
    except TypeError:
        return False
    return bool(items) and all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in items)


def show(value: Any) -> str:
    """A config list as the user typed it: [256,512], not ListConfig's repr."""
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        return repr(value)
    return "[" + ",".join(str(v) for v in value) + "]"


def option(node: Any, key: str, default: Any = None) -> Any:
    """``node.key`` for a typed node, an untyped one (a user's own file) or None alike."""
    if node is None:
        return default
    return node.get(key, default) if hasattr(node, "get") else getattr(node, key, default)
