"""The bad-input catalogue: every case is run as a user would (a subprocess of an entry script) and must
end with exit status 2, a message that says what is wrong, no traceback, and no change to an existing
run dir. The subprocesses run two at a time (a fixture), each case asserts its own outcome."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, TINY


@dataclass(frozen=True)
class Case:
    script: str
    args: tuple[str, ...]  # formatted with {d} (bad files), {tmp} (a fresh dir), {run} (the healthy run), {copy}
    message: str
    train_args: bool = True  # train.py cases get the tiny model and the session's TFDS dir
    setup: str = ""  # how {copy} (a copy of the healthy run) is damaged first
    env: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.script} {' '.join(self.args)}" + (f" ({self.setup})" if self.setup else "")


def _config(override: str, message: str) -> Case:
    return Case("train.py", (override, "hydra.run.dir={run}"), message, train_args=False)


def _data(args: list[str], message: str) -> Case:
    return Case("train.py", (*args, "hydra.run.dir={tmp}"), message)


CASES = [
    _config("model.latent_dim=0", "model.latent_dim=0 is out of range; it must be >= 1"),
    _config("prior.components=-1", "prior.components=-1 is out of range; it must be >= 1"),
    _config("trainer.lr=-1", "trainer.lr=-1.0 is out of range; it must be > 0"),
    _config("trainer.batch_size=0", "trainer.batch_size=0 is out of range"),
    _config("trainer.epochs=0", "trainer.epochs=0 is out of range"),
    _config("trainer.kl_samples=0", "trainer.kl_samples=0 is out of range"),
    _config("trainer.max_steps=-5", "trainer.max_steps=-5 is out of range"),
    _config("trainer.temperature=0", "trainer.temperature=0.0 is out of range; it must be > 0"),
    _config("model.hidden=[16,-3]", "model.hidden[1]=-3 is out of range"),
    _config("trainer.lr=fast", "trainer.lr"),  # wrong type: Hydra names key and value
    _config("model.latent_dim=2.5", "model.latent_dim"),
    _config("data.header=maybe", "data.header"),
    _config("task.standardize=sometimes", "task.standardize"),
    _config("trainer.learning_rate=0.1", "trainer.learning_rate"),  # unknown key
    _config("colour=blue", "colour"),  # unknown top-level key
    _config("prior=mystery", "prior/mystery"),  # unknown group option, with the available ones
    _config("data.binarize=maybe", "data.binarize='maybe' is not allowed; choose one of: none, static, dynamic"),
    _config("prior.covariance=spherical", "choose one of: full, diag"),
    _config("model.likelihood=poisson", "choose one of: auto, bernoulli, gaussian, gaussian_per_feature, logistic"),
    _config("strategy.kind=tpu", "choose one of: default, mirrored, multi_worker"),
    _config("trainer.jit=sometimes", "choose one of: auto, true, false"),
    _config("trainer.precision=float8", "choose one of: float32, mixed_float16, mixed_bfloat16"),
    _config("data=local", "data=local needs data.images"),
    _config("data.test_fraction=1.5", "data.test_fraction=1.5 is out of range"),
    _config("data.neighbours=-1", "data.neighbours=-1 is out of range; it must be >= 0"),
    _config("data.neighbours=3", "data.neighbours=3 is for a table's augmented views (data=table data.augment=true)"),
    _config("data.augment=false", "set data.augment=true"),
    _config("task=gmm", "task=gmm fits tabular data"),
    _config("data=table", "data=table needs data.path"),
    Case(
        "train.py",
        ("task=bgmm_svi", "data=blobs", "task.standardize=true", "hydra.run.dir={run}"),
        "task.standardize is for task=gmm; task=bgmm_svi always standardises them within",
        train_args=False,
    ),
    _data(["data=local", "data.images={d}/nan.npz"], "NaN or inf pixels"),
    _data(["data=local", "data.images={d}/inf.npz"], "NaN or inf pixels"),
    _data(["data=local", "data.images={d}/strings.npz"], "images must be numeric"),
    _data(["data=local", "data.images={d}/flat.npz"], "images must be [N, H, W] or [N, H, W, C]"),
    _data(["data=local", "data.images={d}/empty.npz"], "with N > 0"),
    _data(["data=local", "data.images={d}/big.npz"], "pixel values must lie in [0, 1] or [0, 255]"),
    _data(["data=local", "data.images={d}/nox.npz"], "(it has: images, masks); name the one to read with data.x_key="),
    _data(["data=local", "data.images={d}/mislabelled.npz"], "7 labels for 20 images"),
    _data(["data=local", "data.images={d}/few.npz"], "too few to hold out"),
    _data(["data=local", "data.images={d}/missing.gz"], "does not exist"),
    _data(["data=local", "data.images={d}/corrupt.gz"], "not a readable IDX file"),
    _data(["data=local", "data.images={d}/badmagic"], "not a readable IDX file"),
    _data(["data=local", "data.images={d}/text.npz"], "not a readable .npz file"),
    _data(["data=tfds", "data.name=no_such_dataset_xyz"], "'no_such_dataset_xyz' is not a TFDS dataset"),
    _data(["data=mnist", "data.download=false", "data.data_dir={d}/tfds"], "is not prepared"),
    _data(["trainer.batch_size=5000"], "trainer.batch_size=5000 is larger than the 4000 training examples"),
    _data(["strategy=multi_worker"], "needs the TF_CONFIG environment variable"),
    _data(["data=table", "data.path={d}/words.csv"], "column 'b' has the non-numeric value 'x' in data row 1"),
    _data(["data=table", "data.path={d}/missing.csv"], "values are missing (set data.impute=mean or median"),
    _data(["data=table", "data.path={d}/infinite.csv"], "values are infinite at row 2 column 0"),
    _data(["data=table", "data.path={d}/tiny.csv"], "the training split has 2 rows for prior.components=3"),
    _data(["data=table", "data.path={d}/cut.npy"], "cut.npy: the file is shorter than the 50 rows its header"),
    _data(["data=table", "data.path={d}/latin1.csv"], "latin1.csv: not UTF-8 text (byte 0xe9 at offset 13)"),
    _data(["data=table", "data.path={d}/columns.npy"], "stored column by column (Fortran order); save it row"),
    _data(["data=table", "data.path={d}/points.csv", "data.label_column=species"],
          "data.label_column='species' is not a column of"),
    _data(["data=table", "data.path={d}/points.csv", "data.y_key=species"],
          "data.y_key='species' names an array of a .npz; points.csv has none (labels: data.label_column="),
    _data(["data=table", "data.path={d}/columns.npy", "data.x_key=features"],
          "data.x_key='features' names an array of a .npz; columns.npy has none (labels: a .npz's y)"),
    _data(["data=local", "data.images={d}/folder"], "could not be read as images: broken.png"),
    Case("predict.py", ("run_dir={table}", "data=table", "data.path={d}/wide.csv"),
         "wide.csv does not fit this model: it has the column(s) 'c' it was not", train_args=False),
    Case("predict.py", ("run_dir={table}", "data.path={d}/wide.csv"),  # data=table left out
         "data.path sets a key of the 'data' group, which this command leaves empty; choose one first: data=blobs |",
         train_args=False),
    Case("evaluate.py", ("run_dir={run}", "data.images={d}/few.npz"),
         "data.images sets a key of the 'data' group, which this command leaves empty", train_args=False),
    Case("train.py", ("model.latent_dim=5", "hydra.run.dir={run}"), "was trained with model.latent_dim=2 (now 5)"),
    Case("evaluate.py", ("run_dir={tmp}",), "is not a vaemix run dir", train_args=False),
    Case("evaluate.py", ("run_dir={run}", "checkpoint=ckpt-99"), "no checkpoint 'ckpt-99'", train_args=False),
    Case("evaluate.py", ("run_dir={run}", "eval.iwae_samples=-1"), "eval.iwae_samples=-1 is out of range", False),
    Case("evaluate.py", ("run_dir={run}", "data=local", "data.images={d}/few.npz", "data.test_fraction=0.5"),
         "does not fit this model", train_args=False),
    Case("evaluate.py", ("run_dir={copy}", "checkpoint=ckpt-2", "eval.iwae_samples=0", "eval.pictures=false"),
         "ckpt-2 is unreadable", train_args=False, setup="truncate ckpt-2"),
    Case("evaluate.py", ("run_dir={copy}",), "is not plain YAML", train_args=False, setup="python tag"),
    Case("train.py", ("hydra.run.dir={d}/a_file",), "as the run dir: File exists", train_args=False),
    Case("evaluate.py", ("run_dir={copy}",), "names a _target_", train_args=False, setup="foreign _target_"),
]  # fmt: skip


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run dir but its log (a rejected command appends its error line there)."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name != "train.log"}  # fmt: skip


def _run(argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    return subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=180,
                          env={**base, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})  # fmt: skip


def _bad_files(d: Path) -> Path:
    """Bad data files, each wrong in one way."""
    np.savez(d / "nan.npz", x=np.full((20, 4, 4), np.nan))
    np.savez(d / "inf.npz", x=np.full((20, 4, 4), np.inf))
    np.savez(d / "strings.npz", x=np.full((20, 4, 4), "a"))
    np.savez(d / "flat.npz", x=np.zeros(20))
    np.savez(d / "empty.npz", x=np.zeros((0, 4, 4)))
    np.savez(d / "big.npz", x=np.full((20, 4, 4), 1000.0))
    np.savez(d / "nox.npz", images=np.zeros((20, 4, 4)), masks=np.zeros((20, 4, 4)))  # one would be read as x
    np.savez(d / "mislabelled.npz", x=np.zeros((20, 4, 4)), y=np.arange(7))
    np.savez(d / "few.npz", x=np.zeros((2, 4, 4)))
    (d / "corrupt.gz").write_bytes(b"\x1f\x8b not really gzip")
    (d / "badmagic").write_bytes(b"\x00\x00\x07\x01" + b"\x00" * 16)
    (d / "text.npz").write_text("not a zip")
    (d / "words.csv").write_text("a,b\n1,2\n3,x\n" + "5,6\n" * 20)
    (d / "missing.csv").write_text("a,b\n1,2\n3,\n" + "5,6\n" * 20)
    (d / "infinite.csv").write_text("a,b\n1,2\n3,4\ninf,6\n" + "5,6\n" * 20)
    (d / "tiny.csv").write_text("a,b\n1,2\n3,4\n5,7\n")
    np.save(d / "cut.npy", np.zeros((50, 3), np.float32))
    (d / "cut.npy").write_bytes((d / "cut.npy").read_bytes()[:-12])  # a copy that stopped short
    (d / "latin1.csv").write_bytes("a,b\n1,2\n3,caf\u00e9\n".encode("latin-1"))
    np.save(d / "columns.npy", np.asfortranarray(np.zeros((50, 3))))
    points = np.random.default_rng(0).normal(size=(200, 2))
    np.savetxt(d / "points.csv", points, delimiter=",", header="a,b", comments="")
    np.savetxt(d / "wide.csv", np.c_[points, points[:, 0]], delimiter=",", header="a,b,c", comments="")
    (d / "a_file").write_text("not a directory")
    (d / "folder").mkdir()
    (d / "folder" / "broken.png").write_bytes(b"not a png")
    return d


def _damaged_copy(run_dir: Path, copy: Path, how: str) -> None:
    shutil.copytree(run_dir, copy)
    if how == "truncate ckpt-2":
        data = next((copy / "checkpoints").glob("ckpt-2.data-*"))
        data.write_bytes(data.read_bytes()[:100])
    elif how == "python tag":  # a tag that would run code under an unsafe YAML loader
        (copy / "run_config.yaml").write_text("model: !!python/object/apply:os.system ['echo pwned']\n")
    elif how == "foreign _target_":
        cfg = yaml.safe_load((copy / "run_config.yaml").read_text())
        cfg["model"]["_target_"] = "os.system"
        (copy / "run_config.yaml").write_text(yaml.safe_dump(cfg))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, tfds_dir) -> dict:
    """``{case id: (result, checkpoints written)}`` for every case, and the healthy run's snapshot before
    and after all of them under ``"run untouched"``."""
    base = tmp_path_factory.mktemp("catalogue")
    files, run_dir = _bad_files(base), base / "existing"
    r = _run(["train.py", *TINY, f"data.data_dir={tfds_dir}", "trainer.max_steps=2", f"hydra.run.dir={run_dir}"])
    assert r.returncode == 0, r.stderr[-2000:]
    table = base / "table"
    r = _run(["train.py", *TINY, "data=table", f"data.path={files / 'points.csv'}", "trainer.max_steps=2",
              f"hydra.run.dir={table}"])  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    before, jobs = _snapshot(run_dir), {}
    for i, case in enumerate(CASES):
        tmp, copy = base / f"tmp{i}", base / f"copy{i}"
        tmp.mkdir()
        if case.setup:
            _damaged_copy(run_dir, copy, case.setup)
        args = [a.format(d=files, tmp=tmp, run=run_dir, copy=copy, table=table) for a in case.args]
        extra = [*TINY, f"data.data_dir={tfds_dir}"] if case.train_args else []
        jobs[case.id] = ([case.script, *extra, *args], tmp)
    with ThreadPoolExecutor(2) as pool:
        futures = {k: pool.submit(_run, argv) for k, (argv, _) in jobs.items()}
        out = {k: (f.result(), list(jobs[k][1].glob("checkpoints/ckpt-*"))) for k, f in futures.items()}
    return out | {"run untouched": _snapshot(run_dir) == before}


def test_case_ids_are_unique():
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line(case, outcomes):
    r, checkpoints = outcomes[case.id]
    assert r.returncode == 2 and case.message in r.stderr and "Traceback" not in r.stderr, r.stderr[-1500:]
    assert not checkpoints  # nothing was trained


def test_no_bad_command_changed_the_existing_run(outcomes):
    assert outcomes["run untouched"]


def test_the_readme_reports_the_catalogue_size():
    import re

    sizes = re.findall(r"catalogue of (\d+) bad inputs", (ROOT / "README.md").read_text())
    assert sizes and all(int(n) == len(CASES) for n in sizes), (sizes, len(CASES))
