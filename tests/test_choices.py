"""Config mistakes Hydra finds while composing are bad input like any other: one line, exit 2.

Unknown keys (with the closest valid one), wrong types and unknown group choices are caught as
Hydra raises them (nst_exp/config/errors.py), with Hydra started once; nothing is written.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from conftest import FAST, compose_cfg, run_cli
from nst_exp import CONFIG_DIR
from nst_exp.config.errors import config_errors, describe

# The shipped optimizers, whatever they are when this runs (adam, lbfgs, ...).
OPTIMIZERS = ", ".join(sorted(p.stem for p in (CONFIG_DIR / "optimizer").glob("*.yaml")))


@pytest.mark.parametrize(("override", "message"), [
    ("style_wieght=1e5", "style_wieght: no such key; did you mean style_weight?"),
    ("optimizer.lrr=1", "optimizer.lrr: no such key; did you mean optimizer.lr?"),
    ("callbacks.divergence.restart=1", "callbacks.divergence.restart: no such key; did you mean "
                                       "callbacks.divergence.restarts?"),
    ("steps=abc", "steps='abc': expected an integer"),
    ("init.noise=lots", "init.noise='lots': expected a number"),
    ("compile=maybe", "compile='maybe': expected true or false"),
    ("scales=[256,big]", "scales[1]='big': expected an integer"),
    ("layers.style=relu1_1", "layers.style='relu1_1': expected a list"),
    ("clamp=sometimes", "clamp='sometimes': expected one of auto, step, end"),
    ("precision=bf16", "precision='bf16': expected one of 32-true, bf16-mixed, 16-mixed, auto"),
    ("model.pooling=median", "model.pooling='median': expected one of avg, max"),
    ("init.kind=zeros", "init.kind='zeros': expected one of content, gray, image, noise, style"),
    ("loss.gram_norm=big", "loss.gram_norm='big': expected one of chw, gatys, sqrt_chw, none"),
    ("optimizer=adamw", f"optimizer=adamw: no such choice; choose one of {OPTIMIZERS}"),
    ("+experiment=nope", "experiment=nope: no such choice; choose one of adam_vs_lbfgs, augment_strength,"),
    ("hydra/launcher=nope", "hydra/launcher=nope: no such choice; choose one of basic, batched, joblib"),
])
def test_composition_errors_are_one_line_naming_key_and_fix(override: str, message: str) -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose_cfg(*FAST, override)
    line = describe(error.value)
    assert line.startswith(message) and "\n" not in line, line


def test_the_schemas_are_not_choices() -> None:
    """``base_adam`` is the schema adam.yaml extends, not an optimizer to offer."""
    with pytest.raises(ConfigCompositionException) as error:
        compose_cfg("optimizer=nope")
    assert "base_" not in describe(error.value)


@pytest.mark.parametrize(("args", "line"), [
    (["style_wieght=1e5"], "error: style_wieght: no such key; did you mean style_weight?"),
    (["optimizer.lrr=1"], "error: optimizer.lrr: no such key; did you mean optimizer.lr?"),
    (["steps=abc"], "error: steps='abc': expected an integer"),
    (["optimizer=adamw"], f"error: optimizer=adamw: no such choice; choose one of {OPTIMIZERS}"),
    (["-m", "steps=2", "optimizer=adam,nope"], f"error: optimizer=nope: no such choice; choose one of {OPTIMIZERS}"),
])
def test_cli_prints_one_line_exits_2_and_writes_nothing(tmp_path: Path, args: list[str], line: str) -> None:
    result = run_cli(*args, f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip() == line  # the whole of stderr: no Hydra report, no traceback
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no run dir, no sweep dir, no outputs/


def test_choices_from_a_users_config_dir_count(tmp_path: Path) -> None:
    (tmp_path / "optimizer").mkdir()
    (tmp_path / "optimizer" / "mine.yaml").write_text("_target_: torch.optim.SGD\n_partial_: true\nlr: 0.1\n")
    result = run_cli("--config-dir", str(tmp_path), "optimizer=nope", "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 2
    assert "mine" in result.stderr.strip().split("choose one of ")[1].split(", ")


def test_config_errors_is_one_line_exit_2_and_cleans_up(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    cleaned = []
    with pytest.raises(SystemExit) as exit_info, config_errors(cleanup=lambda: cleaned.append(True)):
        compose_cfg("optimizer.lrr=1")
    assert exit_info.value.code == 2 and cleaned == [True]
    assert capsys.readouterr().err == "error: optimizer.lrr: no such key; did you mean optimizer.lr?\n"
    assert "HYDRA_FULL_ERROR" not in os.environ  # set only while Hydra runs


def test_other_errors_and_a_users_full_error_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(RuntimeError), config_errors():  # a bug keeps its traceback
        raise RuntimeError("a bug")
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # the user asked for Hydra's full report
    with pytest.raises(ConfigCompositionException), config_errors():
        compose_cfg("optimizer.lrr=1")


def test_a_mistake_in_a_users_config_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "optimizer").mkdir()
    (tmp_path / "optimizer" / "mine.yaml").write_text("defaults: [base_adam, _self_]\n"
                                                      "_target_: torch.optim.Adam\nlrr: 0.1\n")
    with pytest.raises(ConfigCompositionException) as error:
        compose_cfg("optimizer=mine", f"hydra.searchpath=[file://{tmp_path}]")
    assert describe(error.value) == "optimizer/mine.yaml: optimizer.lrr: no such key; did you mean optimizer.lr?"
