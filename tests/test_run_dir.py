"""A run directory nothing can corrupt, tried the way users meet it: a second training at once, a damaged
or missing checkpoint file, a failing write, a killed worker, readers beside a writer."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from test_fault_tolerance import _free_ports, _values

from conftest import ROOT, TINY
from vaemix.apps.training import train
from vaemix.errors import VaemixError
from vaemix.infra.checkpoints import Checkpoints
from vaemix.infra.lock import LOCK, RunLock


def _train(*args: str, wait: bool = True, env: dict | None = None):
    cmd = [sys.executable, "train.py", *args]
    full_env = {**{k: v for k, v in os.environ.items() if k != "TF_CONFIG"}, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=full_env)


def _args(tfds_dir, run_dir, steps: int, *extra: str) -> list[str]:
    return [*TINY, f"data.data_dir={tfds_dir}", f"trainer.max_steps={steps}", "trainer.checkpoint_every=20",
            "trainer.image_every=0", "trainer.jit=false", f"hydra.run.dir={run_dir}", *extra]  # fmt: skip


def _steps(run_dir) -> list[int]:
    return sorted(int(p.name[5:-6]) for p in (run_dir / "checkpoints").glob("ckpt-*.index"))


def test_a_second_writer_is_refused_while_readers_work_beside_the_first(tfds_dir, tmp_path):
    run = tmp_path / "run"
    first = _train(*_args(tfds_dir, run, 300), wait=False)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "ckpt-20.index").exists() and time.time() < deadline:
        time.sleep(0.1)
    first.send_signal(signal.SIGSTOP)  # paused mid-run, its lock held, while the others try
    second = _train(*_args(tfds_dir, run, 300))
    assert second.returncode == 2 and "is being trained by PID" in second.stderr and "Traceback" not in second.stderr
    reader = subprocess.run([sys.executable, "evaluate.py", f"run_dir={run}", "eval.iwae_samples=0",
                             "eval.pictures=false"], cwd=ROOT, capture_output=True, text=True, timeout=180)  # fmt: skip
    assert reader.returncode == 0, reader.stderr[-2000:]
    first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    assert not (run / LOCK).exists()
    straight = _train(*_args(tfds_dir, tmp_path / "straight", 300))
    assert straight.returncode == 0
    a, b = _values(run), _values(tmp_path / "straight")
    assert max(float(np.max(np.abs(a[k] - b[k]))) for k in a) <= 1e-5  # the refused command changed nothing


def test_a_truncated_newest_checkpoint_is_set_aside_and_training_finishes(tfds_dir, tmp_path):
    assert _train(*_args(tfds_dir, tmp_path, 60)).returncode == 0
    assert _steps(tmp_path) == [0, 20, 40, 60]  # ckpt-0 pinned, the newest 3
    data = next((tmp_path / "checkpoints").glob("ckpt-60.data-*"))
    data.write_bytes(data.read_bytes()[:100])
    r = _train(*_args(tfds_dir, tmp_path, 80))
    assert r.returncode == 0, r.stderr[-2000:]
    log = (tmp_path / "train.log").read_text()
    assert "ckpt-60 is damaged" in log and "moved to corrupt/" in log and "resumed from" in log and "ckpt-40" in log
    assert (tmp_path / "checkpoints" / "corrupt" / data.name).exists()  # moved aside, never deleted
    assert json.loads((tmp_path / "metrics.json").read_text())["step"] == 80


def test_a_missing_state_file_resumes_from_the_newest_checkpoint_not_step_0(tfds_dir, tmp_path):
    assert _train(*_args(tfds_dir, tmp_path, 60)).returncode == 0
    (tmp_path / "checkpoints" / "checkpoint").unlink()
    r = _train(*_args(tfds_dir, tmp_path, 80))
    assert r.returncode == 0, r.stderr[-2000:]
    log = (tmp_path / "train.log").read_text()
    assert "the checkpoint state file is missing" in log and "resumed from" in log and "ckpt-60 at step 60" in log


def test_when_no_checkpoint_reads_the_run_stops_instead_of_restarting(tiny_config, tmp_path):
    train(tiny_config("trainer.max_steps=20", "trainer.checkpoint_every=20"), tmp_path)
    for data in (tmp_path / "checkpoints").glob("ckpt-*.data-*"):
        data.write_bytes(b"broken")
    with pytest.raises(
        VaemixError, match=r"no checkpoint can be read \(2 damaged\); start again with trainer.overwrite"
    ):
        train(tiny_config("trainer.max_steps=40"), tmp_path)
    m = train(tiny_config("trainer.max_steps=40", "trainer.overwrite=true"), tmp_path)
    assert m["step"] == 40 and len(list(tmp_path.glob("previous-*/checkpoints/corrupt/ckpt-*"))) == 4


def test_a_failing_checkpoint_write_stops_with_one_line_and_keeps_the_previous(tiny_config, tmp_path, monkeypatch):
    real, calls = tf.train.Checkpoint.write, []

    def full_disk(self, prefix, **kwargs):
        calls.append(prefix)
        if len(calls) == 3:  # ckpt-0, ckpt-20, then the disk is full
            raise OSError(28, "No space left on device")
        return real(self, prefix, **kwargs)

    monkeypatch.setattr(tf.train.Checkpoint, "write", full_disk)
    with pytest.raises(VaemixError, match=r"could not write checkpoint .*ckpt-40: .*No space left on device.*ckpt-20"):
        train(tiny_config("trainer.max_steps=60", "trainer.checkpoint_every=20"), tmp_path)
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-20")
    assert _values(tmp_path)  # readable
    monkeypatch.setattr(tf.train.Checkpoint, "write", real)
    assert train(tiny_config("trainer.max_steps=60", "trainer.checkpoint_every=20"), tmp_path)["step"] == 60


def test_a_failing_metrics_write_is_one_line(tiny_config, tmp_path, monkeypatch):
    import vaemix.infra.atomic as atomic

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    train(tiny_config("trainer.max_steps=2"), tmp_path)
    monkeypatch.setattr(atomic.os, "replace", full)
    with pytest.raises(VaemixError, match=r"could not write .*metrics.json: No space left on device"):
        train(tiny_config("trainer.max_steps=2"), tmp_path)


def test_ckpt_0_is_kept_for_the_runs_life_and_pretraining_keeps_two(tiny_config, tmp_path):
    cfg = tiny_config("trainer.max_steps=200", "trainer.checkpoint_every=20", "trainer.pretrain_epochs=3",
                      "prior.init=gmm", "prior.init_restarts=2")  # fmt: skip
    train(cfg, tmp_path)
    assert _steps(tmp_path) == [0, 160, 180, 200]
    pretrain = Checkpoints(tmp_path / "checkpoints" / "pretrain")
    assert len(pretrain.steps()) == 2


def test_overwrite_moves_the_earlier_run_aside(tiny_config, tmp_path):
    train(tiny_config("trainer.max_steps=2"), tmp_path)
    with pytest.raises(VaemixError, match="was trained with model.latent_dim=2"):
        train(tiny_config("trainer.max_steps=2", "model.latent_dim=3"), tmp_path)
    m = train(tiny_config("trainer.max_steps=2", "model.latent_dim=3", "trainer.overwrite=true"), tmp_path)
    (aside,) = tmp_path.glob("previous-*")
    assert m["step"] == 2 and (aside / "run_config.yaml").exists() and (aside / "checkpoints" / "ckpt-2.index").exists()


def test_a_lock_left_by_a_dead_holder_elsewhere_is_taken_over_after_its_heartbeat_stops(tmp_path, caplog):
    (tmp_path / LOCK).write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": "then", "heartbeat": 0.0}))
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    assert "taking over the lock of PID 1 on host elsewhere" in caplog.text
    fresh = {"host": "elsewhere", "pid": 7, "started": "now", "heartbeat": time.time()}
    (tmp_path / LOCK).write_text(json.dumps(fresh))
    with pytest.raises(VaemixError, match="is being trained by PID 7 on host elsewhere"), RunLock(tmp_path):
        pass


def test_a_killed_worker_stops_the_other_which_then_resumes(tfds_dir, tmp_path):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    args = _args(tfds_dir, tmp_path, 100000, "strategy=multi_worker")
    env = lambda i: {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}  # noqa: E731
    workers = [_train(*args, wait=False, env=env(i)) for i in range(2)]
    deadline = time.time() + 180
    while not (tmp_path / "checkpoints" / "ckpt-20.index").exists() and time.time() < deadline:
        time.sleep(0.1)
    workers[1].kill()
    t0 = time.time()
    assert workers[0].wait(timeout=120) == 2 and time.time() - t0 < 120  # no hang
    assert "a worker of the cluster stopped answering" in workers[0].stderr.read()
    workers[1].wait()
    last = max(_steps(tmp_path))
    again = [_train(*_args(tfds_dir, tmp_path, last + 20, "strategy=multi_worker"), wait=False, env=env(i))
             for i in range(2)]  # fmt: skip
    assert [w.wait(timeout=240) for w in again] == [0, 0], [w.stderr.read()[-2000:] for w in again]
    assert f"resumed from {tmp_path / 'checkpoints' / f'ckpt-{last}'}" in (tmp_path / "train.log").read_text()
    assert json.loads((tmp_path / "metrics.json").read_text())["step"] == last + 20
    shutil.rmtree(tmp_path / "checkpoints", ignore_errors=True)
