"""The bad-input catalogue: every case is run as a user would (a subprocess of train.py / evaluate.py) and
must end with exit status != 0, a message that says what is wrong, no traceback, and no change to an
existing run dir."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, TINY


def _run(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=180,
                          env={**base, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})  # fmt: skip


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run dir but its log (a rejected command appends its error line there)."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name != "train.log"}  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Bad data files, each wrong in one way."""
    d = tmp_path_factory.mktemp("bad")
    np.savez(d / "nan.npz", x=np.full((20, 4, 4), np.nan))
    np.savez(d / "inf.npz", x=np.full((20, 4, 4), np.inf))
    np.savez(d / "strings.npz", x=np.full((20, 4, 4), "a"))
    np.savez(d / "flat.npz", x=np.zeros(20))
    np.savez(d / "empty.npz", x=np.zeros((0, 4, 4)))
    np.savez(d / "big.npz", x=np.full((20, 4, 4), 1000.0))
    np.savez(d / "nox.npz", images=np.zeros((20, 4, 4)))
    np.savez(d / "mislabelled.npz", x=np.zeros((20, 4, 4)), y=np.arange(7))
    np.savez(d / "few.npz", x=np.zeros((2, 4, 4)))
    (d / "corrupt.gz").write_bytes(b"\x1f\x8b not really gzip")
    (d / "badmagic").write_bytes(b"\x00\x00\x07\x01" + b"\x00" * 16)
    (d / "text.npz").write_text("not a zip")
    return d


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tfds_dir):
    """An existing, healthy run that the bad commands below must leave untouched."""
    d = tmp_path_factory.mktemp("existing")
    r = _run("train.py", *TINY, f"data.data_dir={tfds_dir}", "trainer.max_steps=2", f"hydra.run.dir={d}")
    assert r.returncode == 0, r.stderr[-2000:]
    return d


CONFIG_CASES = [
    ("model.latent_dim=0", "model.latent_dim=0 is out of range; it must be >= 1"),
    ("prior.components=-1", "prior.components=-1 is out of range; it must be >= 1"),
    ("trainer.lr=-1", "trainer.lr=-1.0 is out of range; it must be > 0"),
    ("trainer.batch_size=0", "trainer.batch_size=0 is out of range"),
    ("trainer.epochs=0", "trainer.epochs=0 is out of range"),
    ("trainer.kl_samples=0", "trainer.kl_samples=0 is out of range"),
    ("trainer.max_steps=-5", "trainer.max_steps=-5 is out of range"),
    ("trainer.temperature=0", "trainer.temperature=0.0 is out of range; it must be > 0"),
    ("model.hidden=[16,-3]", "model.hidden[1]=-3 is out of range"),
    ("trainer.lr=fast", "trainer.lr"),  # wrong type: Hydra names key and value
    ("model.latent_dim=2.5", "model.latent_dim"),
    ("trainer.learning_rate=0.1", "trainer.learning_rate"),  # unknown key
    ("colour=blue", "colour"),  # unknown top-level key
    ("prior=mystery", "prior/mystery"),  # unknown group option, with the available ones
    ("data.binarize=maybe", "data.binarize='maybe' is not allowed; choose one of: none, static, dynamic"),
    ("prior.covariance=spherical", "choose one of: full, diag"),
    ("model.likelihood=poisson", "choose one of: bernoulli, gaussian"),
    ("strategy.kind=tpu", "choose one of: default, mirrored, multi_worker"),
    ("trainer.jit=sometimes", "choose one of: auto, true, false"),
    ("trainer.precision=float8", "choose one of: float32, mixed_float16, mixed_bfloat16"),
    ("data=local", "data=local needs data.images"),
    ("data.test_fraction=1.5", "data.test_fraction=1.5 is out of range"),
    ("data.augment=false", "set data.augment=true"),
    ("task=gmm", "task=gmm fits tabular data"),
    ("data=table", "data=table is tabular; choose a task"),
]


@pytest.mark.parametrize("override,message", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_values(override, message, run_dir):
    before = _snapshot(run_dir)
    r = _run("train.py", override, f"hydra.run.dir={run_dir}")
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, r.stderr[-1500:]
    assert _snapshot(run_dir) == before


DATA_CASES = [
    (["data=local", "data.images={d}/nan.npz"], "NaN or inf pixels"),
    (["data=local", "data.images={d}/inf.npz"], "NaN or inf pixels"),
    (["data=local", "data.images={d}/strings.npz"], "images must be numeric"),
    (["data=local", "data.images={d}/flat.npz"], "images must be [N, H, W] or [N, H, W, C]"),
    (["data=local", "data.images={d}/empty.npz"], "with N > 0"),
    (["data=local", "data.images={d}/big.npz"], "pixel values must lie in [0, 1] or [0, 255]"),
    (["data=local", "data.images={d}/nox.npz"], "no array 'x' in the .npz"),
    (["data=local", "data.images={d}/mislabelled.npz"], "7 labels for 20 images"),
    (["data=local", "data.images={d}/few.npz"], "too few to hold out"),
    (["data=local", "data.images={d}/missing.gz"], "does not exist"),
    (["data=local", "data.images={d}/corrupt.gz"], "not a readable IDX file"),
    (["data=local", "data.images={d}/badmagic"], "not a readable IDX file"),
    (["data=local", "data.images={d}/text.npz"], "not a readable .npz file"),
    (["data=tfds", "data.name=no_such_dataset_xyz"], "'no_such_dataset_xyz' is not a TFDS dataset"),
    (["data=mnist", "data.download=false", "data.data_dir={d}/tfds"], "is not prepared"),
    (["trainer.batch_size=5000"], "trainer.batch_size=5000 is larger than the 4000 training examples"),
    (["strategy=multi_worker"], "needs the TF_CONFIG environment variable"),
]


@pytest.mark.parametrize("overrides,message", DATA_CASES, ids=[" ".join(c[0]) for c in DATA_CASES])
def test_bad_data_and_setups(overrides, message, files, tfds_dir, tmp_path):
    args = [o.format(d=files) for o in overrides]
    r = _run("train.py", *TINY, f"data.data_dir={tfds_dir}", *args, f"hydra.run.dir={tmp_path}")
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr[-1500:]
    assert not list(tmp_path.glob("checkpoints/ckpt-*"))


def test_resume_with_an_incompatible_model_leaves_the_run_alone(run_dir, tfds_dir):
    before = _snapshot(run_dir)
    r = _run("train.py", *TINY, f"data.data_dir={tfds_dir}", "model.latent_dim=5", f"hydra.run.dir={run_dir}")
    assert r.returncode == 2 and "was trained with model.latent_dim=2 (now 5)" in r.stderr
    assert _snapshot(run_dir) == before


def test_corrupt_checkpoint_is_a_clear_error(run_dir, tmp_path, tfds_dir):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    data = next((copy / "checkpoints").glob("ckpt-2.data-*"))
    data.write_bytes(data.read_bytes()[:100])
    r = _run("evaluate.py", f"run_dir={copy}", "eval.iwae_samples=0", "eval.pictures=false")
    assert r.returncode == 2 and "does not fit this model or is unreadable" in r.stderr and "Traceback" not in r.stderr


EVAL_CASES = [
    (["run_dir={tmp}"], "is not a vaemix run dir"),
    (["run_dir={run}", "checkpoint=ckpt-99"], "no checkpoint 'ckpt-99'"),
    (["run_dir={run}", "eval.iwae_samples=-1"], "eval.iwae_samples=-1 is out of range"),
    (["run_dir={run}", "data=local", "data.images={files}/few.npz", "data.test_fraction=0.5"],
     "does not fit this model"),
]  # fmt: skip


@pytest.mark.parametrize("args,message", EVAL_CASES, ids=[" ".join(c[0]) for c in EVAL_CASES])
def test_bad_evaluations(args, message, run_dir, files, tmp_path):
    before = _snapshot(run_dir)
    r = _run("evaluate.py", *[a.format(tmp=tmp_path, run=run_dir, files=files) for a in args])
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr[-1500:]
    assert _snapshot(run_dir) == before


def test_a_run_config_naming_a_foreign_target_is_refused(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    cfg = yaml.safe_load((copy / "run_config.yaml").read_text())
    cfg["model"]["_target_"] = "os.system"
    (copy / "run_config.yaml").write_text(yaml.safe_dump(cfg))
    r = _run("evaluate.py", f"run_dir={copy}")
    assert r.returncode == 2 and "names a _target_" in r.stderr
