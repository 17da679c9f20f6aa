"""Every conf/experiment/*.yaml composes, sweeps the jobs the paper asks for, with its settings."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from conftest import CONF_DIR, run_cli
from nst_exp import CONFIG_DIR
from nst_exp.config import check_config
from nst_exp.core.layers import layer_weights
from nst_exp.reporting.multirun import sweep_product

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
REQUIRED = {"gatys_fig1_content", "gatys_fig1_style", "gatys_fig3", "gatys_layer_ratio", "gatys_fig5",
            "gatys_fig6", "layer_visualization", "adam_vs_lbfgs", "l1_vs_l2", "augment_strength",
            "tutorial_pytorch", "mxnet_neural_style", "d2l", "yunjey"}
PRESETS = {"tutorial_pytorch", "mxnet_neural_style", "d2l", "yunjey", "gatys_paper_sums", "neural_style"}  # single runs
CUMULATIVE = [["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"][:n] for n in range(1, 6)]


def compose_job(*overrides: str) -> DictConfig:
    """A job's config with HydraConfig set, so ``${hydra:...}`` interpolations resolve."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):  # resolve now: the next compose replaces the HydraConfig
        cfg.content_weight, cfg.style_weight = cfg.content_weight, cfg.style_weight
    return cfg


def sweep_jobs(experiment: str) -> list[list[str]]:
    """The jobs ``-m``/``hydra.mode: MULTIRUN`` launches for an experiment, as override lists."""
    params = compose_job(f"experiment={experiment}").hydra.sweeper.params or {}
    return sweep_product([f"{k}={v}" for k, v in params.items()])


def jobs_of(experiment: str) -> list[DictConfig]:
    return [compose_job(f"experiment={experiment}", *job) for job in sweep_jobs(experiment)]


def swept(experiment: str) -> list[dict[str, str]]:
    """Each job's overrides as {key: value string}, without composing (fast)."""
    return [dict(o.split("=", 1) for o in job) for job in sweep_jobs(experiment)]


def as_list(value: str) -> list[str]:
    """``"[a,b]"`` -> ``["a", "b"]`` (a swept list value as Hydra writes it)."""
    return [item for item in value.strip("[]").split(",") if item]


def test_every_required_experiment_exists() -> None:
    assert set(EXPERIMENTS) >= REQUIRED


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_checks(experiment: str) -> None:
    for job in sweep_jobs(experiment)[:1] or [[]]:
        cfg = compose_job(f"experiment={experiment}", *job)
        check_config(cfg)
        for field in ("content", "style"):
            layer_weights(cfg.model.arch, list(cfg.layers[field]), cfg.layers.get(f"{field}_weights"),
                          f"layers.{field}")
        assert cfg.tags, "experiments tag their W&B runs"
        paper = experiment.startswith("gatys_")
        assert (str(cfg.hydra.mode) == "RunMode.MULTIRUN") == (experiment not in PRESETS)
        if paper:  # the paper's setup: normalised VGG19, average pooling, E_l, equal layer weights, box
            assert cfg.model.arch == "vgg19" and cfg.model.pooling == "avg" and cfg.model.normalize
            assert dict(cfg.loss) == {"norm": "l2", "reduction": "sum", "gram_norm": "gatys", "tv_norm": "l2",
                                      "tv_space": "pixels", "tv_reduction": "mean", "normalize_gradients": False,
                                      "reference_edge": None if experiment == "gatys_paper_sums" else 512}
            assert cfg.clamp == "auto"  # box-constrained L-BFGS
            assert not cfg.layers.style_weights and not cfg.layers.content_weights
            assert cfg.optimizer._target_ == "torch.optim.LBFGS"


def test_gatys_fig1_content_one_layer_from_noise() -> None:
    assert [as_list(j["layers.content"]) for j in swept("gatys_fig1_content")] == [[f"relu{b}_2"] for b in range(1, 6)]
    cfg = compose_job("experiment=gatys_fig1_content", "layers.content=[relu5_2]")
    assert list(cfg.layers.content) == ["relu5_2"]
    assert cfg.style_weight == 0 and list(cfg.layers.style) == [] and cfg.init.kind == "noise"


def test_gatys_fig1_style_cumulative_sets_from_noise() -> None:
    jobs = swept("gatys_fig1_style")
    assert [as_list(j["layers.style"]) for j in jobs] == CUMULATIVE
    cfg = compose_job("experiment=gatys_fig1_style", f"layers.style={jobs[2]['layers.style']}")
    assert list(cfg.layers.style) == CUMULATIVE[2]
    assert cfg.content_weight == 0 and list(cfg.layers.content) == [] and cfg.init.kind == "noise"


def test_gatys_fig3_pairs_and_alpha_beta() -> None:
    ratios = {c.pair.style.split("/")[-1]: c.content_weight for c in jobs_of("gatys_fig3")}
    assert ratios == {"shipwreck.jpg": 1e-3, "starry_night.jpg": 8e-4, "the_scream.jpg": 5e-3,
                      "composition_vii.jpg": 5e-4}
    assert compose_job("experiment=gatys_fig3", "pair=coffee_starry_night").content_weight == 1e-3  # not in the paper
    cfg = compose_job("experiment=gatys_fig3")
    assert cfg.style_weight == 2e5 and list(cfg.layers.content) == ["relu4_2"] and cfg.init.kind == "gray"
    assert list(cfg.layers.style) == CUMULATIVE[-1]


def test_gatys_layer_ratio_is_five_sets_by_four_ratios() -> None:
    jobs = swept("gatys_layer_ratio")
    assert len(jobs) == 20 and list(jobs[0]) == ["layers.style", "content_weight"]  # rows, columns
    assert [as_list(j["layers.style"]) for j in jobs[::4]] == CUMULATIVE
    assert [float(j["content_weight"]) for j in jobs[:4]] == [1e-5, 1e-4, 1e-3, 1e-2]
    cfg = compose_job("experiment=gatys_layer_ratio", *[f"{k}={v}" for k, v in jobs[-1].items()])
    assert list(cfg.layers.style) == CUMULATIVE[-1] and cfg.content_weight == 1e-2
    assert cfg.pair.style.endswith("composition_vii.jpg")


def test_gatys_fig5_and_fig6() -> None:
    fig5 = jobs_of("gatys_fig5")
    assert [list(c.layers.content) for c in fig5] == [["relu2_2"], ["relu4_2"]]
    assert all(math.isclose(c.content_weight, 1e-3) for c in fig5)
    fig6 = swept("gatys_fig6")  # init=gray is the paper's white noise, small amplitude
    expected = [(k, s) for k in ("content", "style", "gray") for s in range(4)]
    assert [(j["init"], int(j["seed"])) for j in fig6] == expected


def test_other_ablations_sweep_what_they_compare() -> None:
    assert [as_list(j["layers.style"]) for j in swept("layer_visualization")] == [[s[-1]] for s in CUMULATIVE]
    assert compose_job("experiment=layer_visualization").content_weight == 0
    assert [(j["optimizer"], float(j["style_weight"])) for j in swept("adam_vs_lbfgs")] == \
        [(o, w) for o in ("adam", "lbfgs") for w in (1e5, 1e6, 1e7)]
    assert [(j["loss"], float(j["style_weight"])) for j in swept("l1_vs_l2")] == \
        [(n, w) for n in ("l1", "l2") for w in (1e4, 1e5, 1e6)]
    assert [float(j["augment.strength"]) for j in swept("augment_strength")] == [0.0, 0.5, 2.0]
    assert compose_job("experiment=augment_strength").augment._target_ == "nst_exp.core.augment.RandomAffine"


def test_seed_presets() -> None:
    mx = compose_job("experiment=mxnet_neural_style")
    assert (mx.stop_eps, mx.denoise, mx.snapshot_every, mx.image_size) == (0.005, 0.2, 50, 600)
    assert list(mx.layers.content) == ["relu4_2"] and mx.optimizer._target_ == "nst_exp.core.mxnet_sgd.MXNetSGD"
    assert (mx.model.pooling, mx.model.pixel_max, mx.denoise_method, mx.stop_on) == ("avg", 256, "chambolle", "image")
    d2l = compose_job("experiment=d2l")
    assert list(d2l.layers.style) == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "conv5_1"]
    assert list(d2l.layers.content) == ["relu4_4"] and d2l.init.kind == "content" and d2l.tv_weight > 0
    assert (d2l.scheduler.step_size, d2l.scheduler.gamma, d2l.loss.tv_norm) == (50, 0.8, "l1")
    yj = compose_job("experiment=yunjey")
    assert (yj.optimizer.lr, list(yj.optimizer.betas), yj.steps, yj.snapshot_every) == (6.8e-4, [0.5, 0.999], 2000, 500)
    tut = compose_job("experiment=tutorial_pytorch")
    assert (tut.style_weight, tut.layers.content[0], tut.init.kind) == (1e6, "conv2_2", "content")


def test_cli_resolves_the_per_pair_ratio(tmp_path: Path) -> None:
    """``${hydra:runtime.choices.pair}`` only resolves inside a real Hydra run."""
    result = run_cli("experiment=gatys_fig3", "pair=tubingen_the_scream", "--cfg", "job", "--resolve", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    job = OmegaConf.create(result.stdout)
    assert job.content_weight == 5e-3 and job.style_weight == 2e5
