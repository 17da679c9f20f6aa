"""An unknown config-group choice is bad input like any other: one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli
from nst_exp import CONFIG_DIR
from nst_exp.errors import ConfigError
from nst_exp.runtime.choices import check_group_choices

# The shipped optimizers, whatever they are when this runs (adam, lbfgs, ...).
OPTIMIZERS = ", ".join(sorted(p.stem for p in (CONFIG_DIR / "optimizer").glob("*.yaml")))


@pytest.mark.parametrize(("args", "message"), [
    (["optimizer=nope"], f"optimizer=nope: no such choice; choices: {OPTIMIZERS}"),
    (["-m", "steps=2", "optimizer=adam,nope"], "optimizer=nope: no such choice"),
    (["+experiment=nope"], "experiment=nope: no such choice; choices: adam_vs_lbfgs,"),
    (["hydra/launcher=nope"], "hydra/launcher=nope: no such choice; choices: basic, batched, joblib"),
])
def test_unknown_choice_names_group_value_and_choices(args: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        check_group_choices(args, CONFIG_DIR)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize("args", [
    ["optimizer=adam", "layers=gatys", "optimizer.lr=0.5", "steps=3", "tags=[a,b]"],
    ["-m", "optimizer=adam,lbfgs", "experiment=gatys_fig3", "hydra/launcher=joblib", "hydra/sweeper=optuna"],
    ["init=null", "~augment", "style_weight=tag(log, interval(1, 10))", "broken=[", "--cfg", "job"],
])
def test_known_choices_and_other_arguments_pass(args: list[str]) -> None:
    check_group_choices(args, CONFIG_DIR)


def test_choices_from_a_users_config_dir_count(tmp_path: Path) -> None:
    (tmp_path / "optimizer").mkdir()
    (tmp_path / "optimizer" / "mine.yaml").write_text("_target_: torch.optim.SGD\n_partial_: true\nlr: 0.1\n")
    check_group_choices(["--config-dir", str(tmp_path), "optimizer=mine"], CONFIG_DIR)
    with pytest.raises(ConfigError) as error:
        check_group_choices([f"--config-dir={tmp_path}", "optimizer=nope"], CONFIG_DIR)
    assert "mine" in str(error.value).split("choices: ")[1].split(", ")


def test_cli_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    result = run_cli("optimizer=nope", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: optimizer=nope: no such choice; choices: {OPTIMIZERS}"
    assert not (tmp_path / "outputs").exists()
