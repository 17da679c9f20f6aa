"""Hydra's and OmegaConf's config errors, as the one line every other bad input gets.

    style_wieght=1e5  ->  style_wieght: no such key; did you mean style_weight?
    optimizer.lrr=1   ->  optimizer.lrr: no such key; did you mean optimizer.lr?
    steps=abc         ->  steps='abc': expected an integer
    optimizer=adamw   ->  optimizer=adamw: no such choice; choose one of adam, lbfgs, mxnet_sgd, sgd

How the error is caught, with Hydra started once: ``hydra.main`` runs the app through Hydra's
``run_and_report``, which prints an error in several lines and exits 1, unless the environment
variable ``HYDRA_FULL_ERROR`` is set, its documented switch to let the exception through.
``config_errors()`` sets it for the run (unless the user set it, who then gets Hydra's own
report and traceback), catches what composing raises (ConfigCompositionException, also from a
sweep's jobs, and OverrideParseException) and turns it into one line. Any other exception
passes untouched: a job's own errors are the failure contract's (runtime/task.py); a bug in a
single run shows Python's whole traceback, Hydra's frames included, instead of Hydra's trimmed one.
The alternatives: re-parsing argv and starting Hydra a second time before the run (the previous
runtime/choices.py) costs a second start and covered only group choices; calling Hydra's internal
``_run_hydra`` ourselves is private API.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from nst_exp.config.store import SCHEMA_PREFIX
from nst_exp.errors import EXIT_USER_ERROR

FULL_ERROR = "HYDRA_FULL_ERROR"
# OmegaConf's words for a value that does not fit the field, and what the line says instead.
EXPECTED = [(r"converted to Integer", "an integer"), (r"converted to Float", "a number"),
            (r"valid bool", "true or false"), (r"to string", "a string"),
            (r"is not a ListConfig", "a list"), (r"is not a DictConfig|is not a subclass", "a mapping"),
            (r"expected one of \[(.*)\]", "one of {0}")]


def describe(error: BaseException) -> str:
    """The one-line message for a composition error."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options is not None:
        group, _, name = error.missing_cfg_file.rpartition("/")
        choices = sorted(option for option in error.options if not option.startswith(SCHEMA_PREFIX))
        return f"{group}={name}: no such choice; choose one of {', '.join(choices)}"
    # an override's error is the cause; a config file's (In 'optimizer/mine': ...) the context
    cause = next((e for e in (error.__cause__, error.__context__) if isinstance(e, OmegaConfBaseException)), error)
    in_file = re.match(r"In '([^']+)': ", str(error))
    where = f"{in_file.group(1)}.yaml: " if in_file else ""
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and cause.full_key:
        return where + _unknown_key(cause)
    if isinstance(cause, ValidationError) and cause.full_key:
        return f"{where}{cause.full_key}={cause.value!r}: expected {_expected(str(cause))}"
    return " ".join(_first_line(text) for text in dict.fromkeys([str(error), str(cause)]))


def _unknown_key(error: OmegaConfBaseException) -> str:
    """``a.b: no such key``, with the closest key of the same node if one is close."""
    full_key = str(error.full_key)
    prefix = full_key[: len(full_key) - len(str(error.key))]
    keys = [str(key) for key in error.parent_node] if error.parent_node is not None else []
    close = difflib.get_close_matches(str(error.key), [key for key in keys if not key.startswith("_")], n=1)
    hint = f"; did you mean {prefix}{close[0]}?" if close else f"; keys here: {', '.join(keys)}" if keys else ""
    return f"{full_key}: no such key{hint}"


def _expected(message: str) -> str:
    for pattern, words in EXPECTED:
        found = re.search(pattern, message)
        if found:
            return words.format(*found.groups())
    return _first_line(message)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


@contextmanager
def config_errors(cleanup: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Run Hydra inside: a config error runs ``cleanup`` (a sweep's dir made before its jobs
    failed to compose), prints ``error: <one line>`` and exits with status 2."""
    before = os.environ.get(FULL_ERROR)
    if before == "1":  # the user asked for Hydra's full report
        yield
        return
    os.environ[FULL_ERROR] = "1"
    try:
        yield
    except (ConfigCompositionException, OverrideParseException) as error:
        cleanup()
        print(f"error: {describe(error)}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
    finally:
        if before is None:
            os.environ.pop(FULL_ERROR, None)
        else:
            os.environ[FULL_ERROR] = before
