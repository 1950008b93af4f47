"""Evaluation: round trip with training, IWAE bound, known-answer clustering, pictures, bad run dirs."""

import json
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest
import yaml

from conftest import ROOT, TINY, compose_config
from vaemix.apps.evaluation import evaluate_run, format_table
from vaemix.apps.training import train
from vaemix.errors import VaemixError
from vaemix.infra.config import DataConfig, EvalOptions
from vaemix.infra.rundir import load_run_config


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tfds_dir):
    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose_config(*TINY, f"data.data_dir={tfds_dir}", "trainer.max_steps=2")
    metrics = train(cfg, run_dir)
    # What Hydra writes for a real run: the evaluation rebuilds the model from it.
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(asdict(cfg)))
    return run_dir, metrics


def test_round_trip_elbo_equals_training_and_iwae_is_tighter(trained_run):
    run_dir, trained = trained_run
    m = evaluate_run(run_dir, options=EvalOptions(iwae_samples=64, pictures=True))
    assert m["step"] == 2 and m["checkpoint"] == "ckpt-2" and m["num_examples"] == 1000
    assert m["elbo"] == pytest.approx(trained["elbo"], abs=1e-4)
    # Grey levels under a Bernoulli likelihood: the bound is not called a log-likelihood.
    assert "iwae_nll" not in m and m["iwae_cross_entropy"] <= -m["elbo"] + 1e-4
    assert 0.0 <= m["cluster_acc"] <= 1.0 and 0.0 <= m["nmi"] <= 1.0 and 1 <= m["components_used"] <= 3
    saved = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert saved["elbo"] == pytest.approx(m["elbo"])
    assert -1.0 <= m["separation"] <= 1.0 and 1 / 3 <= m["confidence"] <= 1.0  # label-free signals
    for name in ["reconstructions", "samples", "latent", "weights", "confusion"]:
        assert (run_dir / "eval" / f"{name}.png").stat().st_size > 500
    assert (run_dir / "eval" / "projector" / "projector_config.pbtxt").exists()  # a reader writes under eval/


def test_picture_shapes(trained_run):
    import tensorflow as tf

    run_dir, _ = trained_run
    recon = tf.io.decode_png((run_dir / "eval" / "reconstructions.png").read_bytes()).numpy()
    samples = tf.io.decode_png((run_dir / "eval" / "samples.png").read_bytes()).numpy()
    # 32 inputs as 4 rows of 8 (input, reconstruction) pairs; 28-px digits, 1-px gaps, zoom 2.
    assert recon.shape == (2 * (4 * 29 + 1), 2 * (16 * 29 + 1), 3)
    assert samples.shape == (2 * (3 * 29 + 1), 2 * (10 * 29 + 1), 3)  # one row per component (K=3)


def test_not_a_run_dir_missing_checkpoint_and_foreign_target(trained_run, tmp_path):
    run_dir, _ = trained_run
    with pytest.raises(VaemixError, match="is not a vaemix run dir"):
        load_run_config(tmp_path)
    with pytest.raises(VaemixError, match="no checkpoint 'ckpt-99'"):
        evaluate_run(run_dir, "ckpt-99", options=EvalOptions(iwae_samples=0, pictures=False))
    (tmp_path / ".hydra").mkdir()
    cfg = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    cfg["model"]["_target_"] = "os.system"
    (tmp_path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(VaemixError, match="names a _target_"):
        load_run_config(tmp_path)


def test_data_of_another_shape_is_a_clear_error(trained_run, tmp_path):
    run_dir, _ = trained_run
    np.savez(tmp_path / "small.npz", x=np.zeros((10, 8, 8), np.uint8), y=np.arange(10))
    data = DataConfig(name="local", images=str(tmp_path / "small.npz"))
    with pytest.raises(VaemixError, match=r"does not fit this model.*shape \(8, 8, 1\)"):
        evaluate_run(run_dir, data=data, options=EvalOptions(iwae_samples=0, pictures=False))


def test_evaluate_py_reports_a_bad_run_dir_in_one_line(tmp_path):
    r = subprocess.run(
        [sys.executable, "evaluate.py", f"run_dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2
    assert f"error: {tmp_path} is not a vaemix run dir" in r.stderr and "Traceback" not in r.stderr


def test_the_table_explains_a_missing_separation_under_it():
    table = format_table({"step": 1, "separation": float("nan"), "confidence": 0.158})
    rows = table.splitlines()
    assert "separation  nan" in rows[2] and rows[1].startswith("step        1")
    assert any(r.startswith("separation: ") and "nan when one cluster holds every example" in r for r in rows)
    assert any(r.startswith("confidence: label-free") for r in rows)
