"""Surviving failures: SIGKILL at random moments, SIGTERM, non-finite losses, several workers."""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT, TINY
from vaemix.apps.steps import NonFiniteError, all_finite
from vaemix.apps.training import train


def _values(run_dir) -> dict[str, np.ndarray]:
    path = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    return {n: reader.get_tensor(n) for n, _ in tf.train.list_variables(path)
            if "VARIABLE_VALUE" in n and not n.startswith("save_counter")}  # fmt: skip


def _start(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})  # fmt: skip


def _wait_for_checkpoint(run_dir, newer_than: int, proc: subprocess.Popen, timeout: float = 120) -> int:
    """Block until the run's latest checkpoint step exceeds ``newer_than``; return it."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        path = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
        if path and int(path.rsplit("-", 1)[1]) > newer_than:
            return int(path.rsplit("-", 1)[1])
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint after step {newer_than}: {proc.poll()=}")


def test_nonfinite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path):
    with pytest.raises(NonFiniteError, match=r"diverged at step \d+: non-finite .*last good checkpoint is kept"):
        train(tiny_config("trainer.lr=1e30", "trainer.max_steps=50", "trainer.checkpoint_every=1000"), tmp_path)
    saved = sorted(p.name for p in (tmp_path / "checkpoints").glob("ckpt-*.index"))
    assert saved == ["ckpt-0.index"]
    assert all(np.all(np.isfinite(v)) for v in _values(tmp_path).values())


@pytest.mark.parametrize(
    "bad,expected",
    [
        (None, True),
        (np.nan, False),
        (np.inf, False),
        (-np.inf, False),
        (1e30, True),  # large but finite
    ],
)
def test_all_finite_finds_a_single_bad_entry(bad, expected):
    grads = [tf.ones([3, 4]), tf.fill([1000], -2.0), tf.zeros([2])]
    if bad is not None:
        grads[1] = tf.tensor_scatter_nd_update(grads[1], [[517]], [bad])
    assert bool(all_finite(grads)) is expected
    assert bool(tf.function(all_finite, jit_compile=True)(grads)) is expected


def test_all_finite_sees_infinities_of_opposite_sign_in_different_tensors():
    assert not bool(all_finite([tf.constant([np.inf]), tf.constant([-np.inf])]))
    assert bool(all_finite([]))


def test_deterministic_runs_give_the_same_curve(tiny_config, tmp_path):
    a = train(tiny_config("trainer.max_steps=5", "trainer.deterministic=true"), tmp_path / "a")
    b = train(tiny_config("trainer.max_steps=5", "trainer.deterministic=true"), tmp_path / "b")
    assert a == b


def test_sigkill_at_random_moments_resumes_exactly(tmp_path, tfds_dir):
    args = [*TINY, f"data.data_dir={tfds_dir}", "trainer.max_steps=800", "trainer.checkpoint_every=20",
            "trainer.image_every=0"]  # fmt: skip
    killed = tmp_path / "killed"
    rng, last = random.Random(0), 0
    for _ in range(3):
        proc = _start(*args, f"hydra.run.dir={killed}")
        last = _wait_for_checkpoint(killed, last, proc)
        time.sleep(rng.uniform(0.0, 0.5))  # anywhere: mid-step, mid-save, mid-eval
        proc.kill()
        proc.wait()
        last = int(tf.train.latest_checkpoint(str(killed / "checkpoints")).rsplit("-", 1)[1])
        assert tf.train.load_checkpoint(tf.train.latest_checkpoint(str(killed / "checkpoints")))  # readable
    final = _start(*args, f"hydra.run.dir={killed}")
    assert final.wait(timeout=180) == 0, final.stderr.read()[-2000:]
    assert json.loads((killed / "metrics.json").read_text())["step"] == 800
    straight = _start(*args, f"hydra.run.dir={tmp_path / 'straight'}")
    assert straight.wait(timeout=180) == 0
    a, b = _values(killed), _values(tmp_path / "straight")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-5, err_msg=name)


def test_sigterm_saves_a_checkpoint_and_exits_143(tmp_path, tfds_dir):
    args = [*TINY, f"data.data_dir={tfds_dir}", "trainer.max_steps=100000", "trainer.checkpoint_every=20",
            f"hydra.run.dir={tmp_path}"]  # fmt: skip
    proc = _start(*args)
    _wait_for_checkpoint(tmp_path, 0, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    stderr = proc.stderr.read()
    step = int(stderr.split("SIGTERM at train step ")[1].split(";")[0])
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith(f"ckpt-{step}")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_workers_train_like_one_device(tmp_path, tfds_dir):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    args = [*TINY, f"data.data_dir={tfds_dir}", "trainer.max_steps=4", "strategy=multi_worker",
            "trainer.kl_samples=2", "trainer.image_every=0"]  # fmt: skip
    procs = [
        _start(*args, f"hydra.run.dir={tmp_path / f'w{i}'}",
               env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
        for i in range(2)
    ]  # fmt: skip
    try:
        codes = [p.wait(timeout=240) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert codes == [0, 0], [p.stderr.read()[-2000:] for p in procs]
    assert (tmp_path / "w0" / "metrics.json").exists() and not (tmp_path / "w1" / "metrics.json").exists()
    assert not list((tmp_path / "w1" / "tensorboard").glob("events*"))  # only the chief writes summaries
    one = _start(*[a for a in args if a != "strategy=multi_worker"], f"hydra.run.dir={tmp_path / 'one'}")
    assert one.wait(timeout=120) == 0
    a, b = _values(tmp_path / "w0"), _values(tmp_path / "one")
    assert max(float(np.max(np.abs(a[k] - b[k]))) for k in a) <= 1e-5
