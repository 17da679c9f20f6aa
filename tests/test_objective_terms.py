"""The objective is its named terms: one class and one config entry add a term everywhere."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from wandb_records import read_run

from conftest import FAST, compose_cfg
from nst_exp.core.objective import DEFAULT_TERMS, Objective, Seen, Term
from nst_exp.reporting.report import write_report
from nst_exp.runtime.build import build_module
from nst_exp.runtime.fingerprint import fingerprint
from nst_exp.train import train
from objectives import from_features

TOY = "+objective.brightness={_target_:toy_terms.Brightness,weight:2.0,level:0.25}"


@pytest.mark.slow
def test_a_term_added_through_config_reaches_every_record(tmp_path: Path) -> None:
    """metrics.csv, summary.json, the W&B run and report.csv all carry ``brightness_loss``."""
    sweep = tmp_path / "sweep"
    for num, weight in enumerate(("1e4", "1e5")):
        cfg = compose_cfg(*FAST, TOY, f"style_weight={weight}", "logger=wandb", "trainer.enable_progress_bar=false",
                          output_dir=sweep / str(num))
        summary = train(cfg)
        assert summary["status"] == "ok" and summary["terms"] == ["content", "style", "tv", "brightness"]
    job = sweep / "0"
    rows = list(csv.DictReader((job / "metrics.csv").open()))
    assert list(rows[0])[:6] == ["step", "loss", "content_loss", "style_loss", "tv_loss", "brightness_loss"]
    assert all(float(row["brightness_loss"]) > 0 for row in rows)
    total = sum(float(rows[-1][key]) for key in ("content_loss", "style_loss", "tv_loss", "brightness_loss"))
    assert float(rows[-1]["loss"]) == pytest.approx(total, rel=1e-5)  # float32 sum, in another order
    summary = json.loads((job / "summary.json").read_text())
    assert summary["brightness_loss"] > 0
    (run_dir,) = (job / "wandb").glob("offline-run-*")
    run = read_run(run_dir)
    assert run.summary["brightness_loss"] == pytest.approx(summary["brightness_loss"])
    logged = [int(row["trainer/global_step"]) for row in run.history if "train/brightness_loss" in row]
    assert logged == [0, 2, 3]  # every log_every (2) steps, and the last (MetricsRecorder)
    assert run.logged("train/brightness_loss") == pytest.approx([float(rows[s]["brightness_loss"]) for s in logged])
    write_report(sweep)
    report = list(csv.DictReader((sweep / "report.csv").open()))
    assert [float(row["brightness_loss"]) for row in report] == pytest.approx(
        [json.loads((sweep / n / "summary.json").read_text())["brightness_loss"] for n in ("0", "1")])


def test_an_added_term_is_weighted_per_image_and_in_the_fingerprint() -> None:
    module = build_module(compose_cfg(*FAST, TOY))
    objective = module.build_objective()
    assert objective.names == [*DEFAULT_TERMS, "brightness"] and objective.columns[-1] == "brightness_loss"
    image = module.image.detach()
    parts = module.components(image)
    expected = 2.0 * (image.mean() - 0.25) ** 2
    torch.testing.assert_close(parts["brightness_loss"], expected.reshape(1))
    plain = fingerprint(build_module(compose_cfg(*FAST)))
    added = fingerprint(module)
    assert "brightness" in added["spec.terms"] and added["spec.terms"] != plain["spec.terms"]


def test_a_term_can_be_dropped_and_a_zero_weight_costs_nothing() -> None:
    module = build_module(compose_cfg(*FAST, "~objective.tv"))
    assert module.build_objective().names == ["content", "style"]
    features = {"l": torch.rand(1, 2, 3, 3)}
    image = torch.rand(1, 3, 4, 4)
    silent = from_features(features, {}, {"l": 1.0}, {}, weights={"tv": 0.0})
    assert silent.active == {"content": True, "style": True, "tv": False}
    assert silent(Seen(features, image, image))["tv_loss"].item() == 0


def test_terms_need_a_weight_each() -> None:
    with pytest.raises(ValueError, match="without a weight"):
        Objective({"prior": Term()}, {})
