"""Training throughput of vaemix's real step against a bare TF step of the same maths.

    python benchmarks/throughput.py                 # mlp and conv, with and without XLA, 200 steps each
    python benchmarks/throughput.py --steps 50 --models mlp --out /tmp/t.json

Each configuration runs in a fresh process. "framework" is the step ``train.py`` runs: the strategy,
the input pipeline (distributed ``tf.data`` from index batches) and the ``tf.function`` step; "bare" is
the same model and loss (VaDE MLP 784-500-500-2000-10 or the conv net, full-covariance GMM prior with
K=10, MC KL with one sample, Bernoulli pixels, Adam) written directly in TF on a constant batch. It prints
a table (examples/s, ms/step, first-step compile time, peak RSS) and writes JSON; ``--train-memory``
also reports the peak memory of a default ``python train.py`` run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _framework(model: str, jit: bool, steps: int, batch: int) -> dict:
    from hydra import compose, initialize_config_dir

    from vaemix.config import register_schemas, to_config
    from vaemix.data import load
    from vaemix.strategies import make_strategy
    from vaemix.training import Loop, Summaries, build_state, make_schedule, make_train_step

    register_schemas()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = to_config(
            compose("config", [f"model={model}", f"trainer.jit={str(jit).lower()}", f"trainer.batch_size={batch}"])
        )
    strategy = make_strategy("default")
    data = load("mnist5k")
    schedule = make_schedule(len(data.train_images), batch, 1, 10_000, steps + 6)
    with strategy.scope():
        state = build_state(cfg, data.image_shape, schedule.steps_per_epoch)
    step, _ = make_train_step(state.vae, state.updates, strategy, schedule, 1, 0, jit)
    batches = Loop(strategy, data, cfg, True, Summaries("/tmp", enabled=False)).batches(schedule, 0, 0)
    return _time(lambda i: step(next(batches), tf.constant(i, tf.int64), tf.constant(1.0))["loss"], steps)


def _bare(model: str, jit: bool, steps: int, batch: int) -> dict:
    """The same maths with no framework: plain layers, hand-written heads and loss, a constant batch."""
    import numpy as np
    import tf_keras as keras

    d, k = 10, 10
    if model == "mlp":
        enc = keras.Sequential([keras.layers.Flatten()] + [keras.layers.Dense(w, "relu") for w in (500, 500, 2000)])
        dec = keras.Sequential([keras.layers.Dense(w, "relu") for w in (2000, 500, 500)] + [keras.layers.Dense(784)])
    else:
        enc = keras.Sequential(
            [
                keras.layers.Conv2D(32, 4, 2, "same", activation="relu"),
                keras.layers.Conv2D(64, 4, 2, "same", activation="relu"),
                keras.layers.Flatten(),
                keras.layers.Dense(256, "relu"),
            ]
        )
        dec = keras.Sequential(
            [
                keras.layers.Dense(256, "relu"),
                keras.layers.Dense(7 * 7 * 64, "relu"),
                keras.layers.Reshape((7, 7, 64)),
                keras.layers.Conv2DTranspose(32, 4, 2, "same", activation="relu"),
                keras.layers.Conv2DTranspose(1, 4, 2, "same"),
                keras.layers.Flatten(),
            ]
        )
    head = keras.layers.Dense(d + d * (d + 1) // 2)
    logits = tf.Variable(tf.zeros([k]))
    loc = tf.Variable(tf.random.normal([k, d]))
    raw_tril = tf.Variable(tf.zeros([k, d * (d + 1) // 2]))
    x = tf.constant((np.random.default_rng(0).random((batch, 28, 28, 1)) > 0.5).astype(np.float32))
    enc(x), head(enc(x)), dec(tf.zeros([batch, d]))
    variables = enc.trainable_variables + head.trainable_variables + dec.trainable_variables + [logits, loc, raw_tril]
    opt = keras.optimizers.Adam(1e-3)
    log2pi = float(np.log(2 * np.pi))

    def tril(raw):  # [..., d(d+1)/2] -> [..., d, d], softplus diagonal
        m = tfp.math.fill_triangular(raw)
        return tf.linalg.set_diag(m, tf.nn.softplus(tf.linalg.diag_part(m)) + 1e-5)

    def mvn_log_prob(z, mean, scale):  # z [..., d], scale lower-triangular
        sol = tf.linalg.triangular_solve(scale, (z - mean)[..., None])[..., 0]
        return (
            -0.5 * tf.reduce_sum(sol**2, -1)
            - tf.reduce_sum(tf.math.log(tf.linalg.diag_part(scale)), -1)
            - 0.5 * d * log2pi
        )

    def loss_and_grads(x, seed):
        with tf.GradientTape() as tape:
            h = head(enc(x))
            mean, scale = h[:, :d], tril(h[:, d:])
            eps = tf.random.stateless_normal([batch, d], seed)
            z = mean + tf.linalg.matvec(scale, eps)
            log_q = mvn_log_prob(z, mean, scale)
            comp = mvn_log_prob(z[:, None], loc, tril(raw_tril))  # [B, K]
            log_p = tf.reduce_logsumexp(tf.nn.log_softmax(logits) + comp, -1)
            rec = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(tf.reshape(x, [batch, -1]), dec(z)), -1)
            loss = tf.reduce_mean(rec + log_q - log_p)
        return loss, tape.gradient(loss, variables)

    compute = tf.function(loss_and_grads, jit_compile=True) if jit else loss_and_grads

    @tf.function
    def step(i):
        loss, grads = compute(x, tf.stack([tf.constant(0, tf.int64), i]))
        opt.apply_gradients(zip(grads, variables, strict=False))
        return loss

    return _time(lambda i: step(tf.constant(i, tf.int64)), steps)


def _time(step, steps: int) -> dict:
    t0 = time.perf_counter()
    float(step(0))
    compile_s = time.perf_counter() - t0
    for i in range(1, 6):  # warm-up: let tf.data and the allocator settle
        step(i)
    t0 = time.perf_counter()
    for i in range(6, steps + 6):
        out = step(i)
    float(out)  # wait for the last step
    dt = (time.perf_counter() - t0) / steps
    return {
        "ms_per_step": 1000 * dt,
        "compile_s": compile_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _worker(kind: str, model: str, jit: bool, steps: int, batch: int) -> None:
    fn = _framework if kind == "framework" else _bare
    result = fn(model, jit, steps, batch)
    result["examples_per_s"] = batch * 1000 / result["ms_per_step"]
    print("RESULT " + json.dumps(result))


def _run_worker(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        check=False,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def _train_memory() -> dict:
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "train.py",
            "trainer.epochs=2",
            "trainer.pretrain_epochs=2",
            "hydra.run.dir=/tmp/vaemix-bench-memory",
            "trainer.progress=false",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    return {
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "wall_s": time.perf_counter() - t0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--models", nargs="+", default=["mlp", "conv"])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "throughput.json"))
    parser.add_argument("--train-memory", action="store_true")
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "MODEL", "JIT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, model, jit = args.worker
        _worker(kind, model, jit == "true", args.steps, args.batch)
        return

    rows = []
    for model in args.models:
        for jit in ("false", "true"):
            row = {"model": model, "jit": jit == "true"}
            for kind in ("framework", "bare"):
                row[kind] = _run_worker(kind, model, jit, "--steps", str(args.steps), "--batch", str(args.batch))
            row["overhead"] = row["framework"]["ms_per_step"] / row["bare"]["ms_per_step"]
            rows.append(row)
            f, b = row["framework"], row["bare"]
            print(
                f"{model:5} jit={jit:5}  framework {f['examples_per_s']:7.0f} ex/s {f['ms_per_step']:6.1f} ms/step "
                f"compile {f['compile_s']:5.1f}s rss {f['peak_rss_mb']:5.0f}MB | bare {b['examples_per_s']:7.0f} "
                f"ex/s {b['ms_per_step']:6.1f} ms/step | overhead x{row['overhead']:.3f}",
                flush=True,
            )
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "steps": args.steps,
        "batch": args.batch,
        "rows": rows,
    }
    if args.train_memory:
        result["train_py"] = _train_memory()
        print(f"python train.py (2+2 epochs): peak RSS {result['train_py']['peak_rss_mb']:.0f} MB")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
