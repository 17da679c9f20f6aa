"""The typed schema: where the configs are, the Enums, and the range checks beside the fields."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from conftest import FAST, PROJECT_ROOT, compose_cfg
from nst_exp import CONFIG_DIR
from nst_exp.config import check_config
from nst_exp.config.choices import Clamp, GramNorm, Precision
from nst_exp.config.groups import AdamConf, LBFGSConf
from nst_exp.config.schema import TrainConf
from nst_exp.core.losses import GRAM_NORMS
from nst_exp.engine.speed import PRECISIONS
from nst_exp.errors import ConfigError


def test_a_checkout_reads_the_top_level_conf() -> None:
    assert CONFIG_DIR == PROJECT_ROOT / "conf" and (CONFIG_DIR / "train.yaml").is_file()
    assert not (PROJECT_ROOT / "nst_exp" / "conf").exists()  # one copy of the configs in a checkout


def test_enums_are_the_yaml_strings_and_the_codes_constants() -> None:
    assert [m.value for m in GramNorm] == list(GRAM_NORMS)
    assert [m.value for m in Precision] == list(PRECISIONS)  # names may hold '-': 32-true
    clamp = Clamp["auto"]
    # the code that reads the config compares, looks up, prints and writes JSON as before
    assert clamp == "auto" and {"auto": 1}[clamp] == 1 and f"{clamp}" == "auto" and repr(clamp) == "'auto'"
    assert json.dumps({"clamp": clamp}) == '{"clamp": "auto"}'


def test_composed_config_is_typed_by_the_schemas() -> None:
    cfg = compose_cfg(*FAST, "optimizer=adam", "clamp=end")
    assert OmegaConf.get_type(cfg) is TrainConf and OmegaConf.get_type(cfg.optimizer) is AdamConf
    assert cfg.clamp is Clamp["end"] and cfg.steps == 4
    assert OmegaConf.get_type(compose_cfg(*FAST).optimizer) is LBFGSConf
    check_config(cfg)


@pytest.mark.parametrize(("override", "message"), [
    ("steps=0", "steps=0: must be an integer >= 1"),
    ("style_weight=-1", "style_weight=-1: must be a finite number >= 0"),
    ("seed=-1", "seed=-1: must be an integer in [0, 4294967295]"),
    ("stop_eps=1.5", "stop_eps=1.5: must be a number in [0, 1]"),
    ("resume=maybe", "resume='maybe': must be auto, true or false"),
    ("optimizer.lr=0", "optimizer.lr=0: must be a finite number > 0"),
    ("optimizer.history_size=0", "optimizer.history_size=0: must be an integer >= 1"),
    ("init.noise=2", "init.noise=2: must be a number in [0, 1]"),
    ("model.pixel_max=-1", "model.pixel_max=-1: must be a finite number > 0"),
    ("loss.reference_edge=0", "loss.reference_edge=0: must be a positive integer (px) or null (raw sums)"),
    ("callbacks.divergence.lr_factor=1", "callbacks.divergence.lr_factor=1: must be a number in (0, 1)"),
    ("callbacks.stopping.window=0", "callbacks.stopping.window=0: must be an integer >= 1"),
    ("scheduler=step", None),  # a valid one: no error
])
def test_range_checks_name_field_and_value(override: str, message: str | None) -> None:
    cfg = compose_cfg(*FAST, override)
    if message is None:
        check_config(cfg)
        return
    with pytest.raises(ConfigError) as error:
        check_config(cfg)
    assert str(error.value) == message


@pytest.mark.parametrize(("overrides", "message"), [
    (["optimizer=sgd", "optimizer.momentum=1"], "optimizer.momentum=1: must be a number in [0, 1)"),
    (["scheduler=step", "scheduler.gamma=0"], "scheduler.gamma=0: must be a number in (0, 1]"),
    (["scheduler=step", "scheduler.step_size=0"], "scheduler.step_size=0: must be an integer >= 1"),
    (["init=image"], "init.path=None: init=image needs a picture: init.path=my.jpg"),
])
def test_each_group_schema_checks_its_own_fields(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        check_config(compose_cfg(*FAST, *overrides))
    assert str(error.value) == message


def test_the_check_reads_only_what_it_checks() -> None:
    """paths.output_dir is ${hydra:runtime.output_dir}: resolvable only in a Hydra run, never read."""
    cfg = compose_cfg(*FAST)
    assert OmegaConf.is_interpolation(cfg.paths, "output_dir")
    check_config(cfg)
