"""Sweeps through Hydra's launcher and sweeper plugins (the [sweep] extra): joblib, submitit, Optuna."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from conftest import CONF_DIR, FAST, compose_cfg, run_cli
from nst_exp.runtime import devices

pytestmark = pytest.mark.slow  # launchers and Optuna: whole sweeps in subprocesses

TINY = ["model.weights=random", "image_size=32", "steps=4", "trainer=cpu", "logger=none", "snapshot_every=0",
        "trainer.enable_progress_bar=false"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def plugin(name: str, extra: str = "sweep") -> None:
    pytest.importorskip(f"hydra_plugins.{name}", reason=f"{name} is not installed: pip install -e '.[{extra}]'")


def finished_jobs(sweep: Path) -> dict[int, dict]:
    """Job number -> summary.json for every job dir of a sweep."""
    return {int(job.name): json.loads((job / "summary.json").read_text())
            for job in sweep.iterdir() if job.name.isdigit()}


def test_joblib_runs_four_jobs_two_at_a_time_each_in_its_own_slot(tmp_path: Path) -> None:
    """Our process launcher (no joblib plugin needed): the launcher gives each running job a slot."""
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "style_weight=1e3,1e4,1e5,1e6",
                     *TINY, f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = finished_jobs(sweep)
    assert sorted(jobs) == [0, 1, 2, 3] and all(s["status"] == "ok" and s["steps"] == 4 for s in jobs.values())
    pins = [re.search(r"slot (\d) of 2: device cpu, (\d+) CPU thread", (sweep / str(n) / "train.log").read_text())
            for n in range(4)]
    assert all(pins), "every job logs its slot"
    assert {int(p[1]) for p in pins} == {0, 1}  # two running at once, each in its own slot
    assert {int(p[2]) for p in pins} == {max(1, devices.cpu_count() // 2)}


def test_submitit_local_runs_two_jobs(tmp_path: Path) -> None:
    plugin("hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "hydra/launcher=submitit_local", "style_weight=1e4,1e5", *TINY,
                     f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = finished_jobs(sweep)
    assert sorted(jobs) == [0, 1] and all(s["status"] == "ok" and s["steps"] == 4 for s in jobs.values())
    assert len(list((sweep / ".submitit").glob("*/*_log.out"))) == 2  # each ran as its own submitit job


def test_optuna_search_of_three_trials_minimises_judge_loss_and_can_continue(tmp_path: Path) -> None:
    plugin("hydra_optuna_sweeper")
    import optuna

    common = ["hparams_search=optuna", *TINY, f"paths.output_root={tmp_path}"]
    result = run_cli(*common, "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={tmp_path / 'first'}", cwd=tmp_path,
                     env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = finished_jobs(tmp_path / "first")
    assert sorted(trials) == [0, 1, 2]
    scores = [s["judge_loss"] for s in trials.values()]
    assert all(isinstance(v, float) and v > 0 for v in scores)
    best = yaml.safe_load((tmp_path / "first" / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(min(scores))
    assert set(best["best_params"]) == {"style_weight", "tv_weight", "optimizer.lr", "layers"}

    # The same command again adds trials to the same study (SQLite under paths.output_root).
    again = run_cli(*common, "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={tmp_path / 'second'}", cwd=tmp_path,
                    env=ONE_THREAD)
    assert again.returncode == 0, again.stderr[-3000:]
    study = optuna.load_study(study_name="nst", storage=f"sqlite:///{tmp_path}/optuna/nst.db")
    assert len(study.trials) == 4


def test_a_job_given_a_slot_gets_its_gpu_and_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a 2-GPU box the job in slot 1 of 2 runs on cuda:1 (simulated: no GPU here)."""
    chosen: list[int] = []
    threads: list[int] = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    monkeypatch.setattr(devices, "cpu_count", lambda: 8)
    cfg = compose_cfg(*FAST, "trainer=default")
    monkeypatch.setenv(devices.SLOT_ENV, "1/2")
    devices.pin_job(cfg)
    assert list(cfg.trainer.devices) == [1] and chosen == [1] and threads == [4]
    cpu_cfg = compose_cfg(*FAST)  # trainer=cpu: the job stays on the CPU whatever the slot
    assert devices.assign(cpu_cfg, slot=1, n_slots=2) == ("cpu", 4)
    monkeypatch.delenv(devices.SLOT_ENV)
    alone = compose_cfg(*FAST, "trainer=default")
    devices.pin_job(alone)  # no slot given (a single run, SLURM, Ray): devices and threads untouched
    assert alone == compose_cfg(*FAST, "trainer=default") and threads == [4, 4]


def test_slot_env_is_what_pin_job_reads() -> None:
    assert devices.job_slot(devices.slot_env(3, 4)) == (3, 4)
    assert devices.job_slot({}) is None
    with pytest.raises(ValueError, match="slot 4 is not one of 4"):
        devices.slot_env(4, 4)


def test_launcher_schemas_refuse_unknown_and_mistyped_keys() -> None:
    """Each preset extends its plugin's ConfigStore schema, as Hydra's own launchers do."""
    from hydra.errors import ConfigCompositionException

    for launcher, field in (("joblib", "n_jobs"), ("batched", "max_batch")):
        assert launcher_cfg(f"hydra/launcher={launcher}")[field] > 0  # the preset's value
        with pytest.raises(ConfigCompositionException, match="nope"):
            launcher_cfg(f"hydra/launcher={launcher}", f"hydra.launcher.{field}=nope")
        with pytest.raises(ConfigCompositionException, match="typo"):
            launcher_cfg(f"hydra/launcher={launcher}", "hydra.launcher.typo=1")


def launcher_cfg(*overrides: str) -> Any:
    """``hydra.launcher`` as composed for ``overrides`` (the schema checks run here)."""
    return with_hydra(*overrides).hydra.launcher


def with_hydra(*overrides: str) -> Any:
    """The config for ``overrides`` with its ``hydra`` node, as a launcher sees a job's."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_batch_probe_resolves_a_job_config_against_its_own_hydra_node() -> None:
    """The batched launcher groups jobs by their resolved configs without touching HydraConfig."""
    from hydra.core.hydra_config import HydraConfig

    from hydra_plugins.nst_batched_launcher.batched_launcher import batch_probe
    from nst_exp.strategies.batched.batch import batch_key

    before = HydraConfig.instance().cfg
    # gatys_fig3's content_weight reads ${hydra:runtime.choices.pair}; paths.output_dir the job's dir
    probes = [batch_probe(with_hydra("experiment=gatys_fig3", f"pair={pair}", f"style_weight={weight}"))
              for pair, weight in (("tubingen_starry_night", 1e3), ("tubingen_starry_night", 1e4),
                                   ("tubingen_the_scream", 1e3))]
    assert HydraConfig.instance().cfg is before
    assert "hydra" not in probes[0] and probes[0].paths.output_dir == "<job dir>"
    assert probes[0].content_weight == 8.0e-4 and probes[2].content_weight == 5.0e-3  # each its own pair
    assert batch_key(probes[0]) == batch_key(probes[1])  # the style weight is batchable
    assert batch_key(probes[0]) != batch_key(probes[2])  # another pair: another batch


def test_slurm_preset_asks_for_one_gpu_per_task_and_a_requeue_signal(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The sbatch script submitit writes from conf/hydra/launcher/slurm.yaml, through the
    launcher's own ``executor()`` (no cluster here: a dummy `srun` on PATH lets submitit build it)."""
    plugin("hydra_submitit_launcher")
    from hydra.utils import instantiate

    (tmp_path / "srun").write_text("#!/bin/sh\n")
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    launcher = instantiate(launcher_cfg("hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                        "hydra.launcher.timeout_min=30",
                                        f"hydra.launcher.submitit_folder={tmp_path}/%j"))
    script = launcher.executor()._executor._make_submission_file_text("python -m nst_exp.train", "uid")
    for line in ("--gpus-per-task=1", "--partition=gpu", "--time=30", "--signal=USR2@120", "--cpus-per-task=8",
                 "--ntasks-per-node=1", "--mem=32GB"):
        assert f"#SBATCH {line}" in script, script


def test_ray_runs_two_jobs_on_a_local_ray_cluster(tmp_path: Path) -> None:
    """A real Ray: the launcher starts a local cluster of 2 CPUs and runs each job as a Ray task.

    Skips only where the ``ray`` extra is missing; .ci/run installs it, so CI runs this."""
    plugin("hydra_ray_launcher", extra="ray")
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2", "style_weight=1e4,1e5",
                     *TINY, f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = finished_jobs(sweep)
    assert sorted(jobs) == [0, 1] and all(s["status"] == "ok" and s["steps"] == 4 for s in jobs.values())
    assert "Ray Launcher is launching 2 jobs" in result.stdout + result.stderr
    assert "Started a local Ray instance" in result.stdout + result.stderr  # not a cluster found running
    # The jobs' third-party noise stays quiet in Ray's workers too (runtime/console.py, via task_wrapper).
    assert "Tip:" not in result.stdout + result.stderr and "is deprecated" not in result.stdout + result.stderr
