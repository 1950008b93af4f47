"""``python train.py -m hparams_search=clustering``: the Optuna sweep as a user runs it, with two tiny trials."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT

TINY_TRIALS = [
    "hydra.sweeper.n_trials=2",
    "hydra.sweeper.sampler.n_startup_trials=2",
    "model.hidden=[16]",
    "prior.components=3",
    "prior.init_restarts=2",
    "trainer.batch_size=500",
    "trainer.pretrain_epochs=1",
    "trainer.epochs=1",
    "trainer.progress=false",
    "trainer.image_every=0",
    "trainer.jit=false",
]


@pytest.mark.parametrize("objective", ["confidence", "cluster_acc"])
def test_two_trial_sweep_returns_the_objective_and_writes_its_results(objective, tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8"}
    argv = [sys.executable, "train.py", "-m", "hparams_search=clustering", f"optimized_metric={objective}"]
    done = subprocess.run(
        [*argv, *TINY_TRIALS, f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    trials = [json.loads((tmp_path / "sweep" / str(i) / "metrics.json").read_text()) for i in range(2)]
    assert results["best_value"] == pytest.approx(max(t[objective] for t in trials))  # the run's own number
    assert set(results["best_params"]) == {
        "trainer.lr",
        "model.latent_dim",
        "trainer.contrastive",
        "trainer.temperature",
    }
    for i in range(2):  # each trial is a normal run dir, with its hyperparameters for TensorBoard's HParams tab
        assert list((tmp_path / "sweep" / str(i) / "tensorboard").iterdir())


def test_an_unknown_objective_is_one_line():
    done = subprocess.run(
        [sys.executable, "train.py", "optimized_metric=accuracy"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 2
    allowed = "confidence, separation, smallest_share, elbo, cluster_acc, nmi, ari"
    assert f"optimized_metric='accuracy' is not allowed; choose one of: {allowed}" in done.stderr
