"""Training throughput of vaemix's real step against a bare TF step of the same maths.

    python benchmarks/throughput.py --train-memory   # mlp and conv, with and without XLA, 200 steps each
    python benchmarks/throughput.py --steps 50 --models mlp --repeats 1 --out /tmp/t.json
    python benchmarks/throughput.py --precision mixed_float16 --out /tmp/gpu.json   # on a GPU

Each cell runs in ``--repeats`` fresh processes and reports the median. "framework" is what
``train.py`` runs: the strategy, the input pipeline (distributed ``tf.data`` from index batches) and
``train_steps``, which runs the ``trainer.log_every`` steps between two log lines in one call. Its rows
use ``experiment=vade`` (no augmentation, no contrastive term), whose maths "bare" repeats: the same
model and loss (VaDE MLP 784-500-500-2000-10 or the conv net, full-covariance GMM prior with K=10, MC
KL with one sample, Bernoulli pixels, Adam) written directly in TF on a constant batch, one
``tf.function`` call a step as a hand-written loop does. Extra rows time the default recipe's step
(``experiment=clustering``: augmented views and the contrastive term), which has no bare twin. It
prints a table (examples/s, ms/step, first-call compile time, peak RSS) and writes JSON;
``--train-memory`` also reports the peak memory of a short default ``python train.py`` run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

from vaemix.apps.steps import use_jit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LOG_2PI = 1.8378770664093453  # log(2 pi)


def _framework(model: str, jit: str, steps: int, batch: int, experiment: str, precision: str) -> dict:
    from hydra import compose, initialize_config_dir

    from vaemix.apps.loop import Loop
    from vaemix.apps.resolve import resolve
    from vaemix.apps.state import build_state
    from vaemix.apps.steps import StepOptions, make_schedule, make_train_step
    from vaemix.infra.config import register_schemas
    from vaemix.infra.images import load_images
    from vaemix.infra.strategies import make_strategy
    from vaemix.infra.summaries import Summaries
    from vaemix.infra.validation import to_config

    register_schemas()
    overrides = [
        f"experiment={experiment}",
        f"model={model}",
        f"trainer.jit={jit}",
        f"trainer.batch_size={batch}",
        f"trainer.precision={precision}",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = to_config(compose("config", overrides))
    t = cfg.trainer
    strategy = make_strategy("default")
    data = load_images(cfg.data)
    cfg = resolve(cfg, data)
    chunk = t.log_every  # train.py runs the steps between two log lines in one call
    calls = -(-steps // chunk)
    schedule = make_schedule(len(data.train), batch, 1, 10_000, (calls + 2) * chunk)  # + compile, warm-up
    with strategy.scope():
        state = build_state(cfg, data.shape, schedule.steps_per_epoch)
    xla = use_jit(jit, model, precision)
    options = StepOptions(0, xla, t.kl_samples, contrastive=t.contrastive, temperature=t.temperature)
    train_steps, _ = make_train_step(state.vae, state.updates, strategy, schedule, options)
    loop = Loop(strategy, data, cfg, True, Summaries("/tmp", enabled=False))
    batches = loop.batches(schedule, 0, 0, views=2 if t.contrastive else 1)
    count = tf.constant(chunk, tf.int64)
    return _time(lambda i: train_steps(batches, tf.constant(i * chunk, tf.int64), count)["loss"], calls, chunk)


def _bare_networks(model: str):
    """The encoder and decoder of ``model`` as plain Keras layers (no TFP heads)."""
    import tf_keras as keras

    if model == "mlp":
        enc = keras.Sequential([keras.layers.Flatten()] + [keras.layers.Dense(w, "relu") for w in (500, 500, 2000)])
        dec = keras.Sequential([keras.layers.Dense(w, "relu") for w in (2000, 500, 500)] + [keras.layers.Dense(784)])
        return enc, dec
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
    return enc, dec


def _tril(raw: tf.Tensor) -> tf.Tensor:
    """``[..., d(d+1)/2] -> [..., d, d]``, softplus diagonal."""
    m = tfp.math.fill_triangular(raw)
    return tf.linalg.set_diag(m, tf.nn.softplus(tf.linalg.diag_part(m)) + 1e-5)


def _mvn_log_prob(z: tf.Tensor, mean: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """``log N(z; mean, scale scale^T)`` by a triangular solve: ``z [..., d]``, ``scale`` lower-triangular."""
    sol = tf.linalg.triangular_solve(scale, (z - mean)[..., None])[..., 0]
    d = tf.cast(tf.shape(z)[-1], z.dtype)
    return (
        -0.5 * tf.reduce_sum(sol**2, -1)
        - tf.reduce_sum(tf.math.log(tf.linalg.diag_part(scale)), -1)
        - 0.5 * d * LOG_2PI
    )


def _bare(model: str, jit: bool, steps: int, batch: int) -> dict:
    """The same maths with no framework: plain layers, hand-written heads and loss, a constant batch."""
    import numpy as np
    import tf_keras as keras

    d, k = 10, 10
    enc, dec = _bare_networks(model)
    head = keras.layers.Dense(d + d * (d + 1) // 2)
    logits = tf.Variable(tf.zeros([k]))
    loc = tf.Variable(tf.random.normal([k, d]))
    raw_tril = tf.Variable(tf.zeros([k, d * (d + 1) // 2]))
    x = tf.constant((np.random.default_rng(0).random((batch, 28, 28, 1)) > 0.5).astype(np.float32))
    enc(x), head(enc(x)), dec(tf.zeros([batch, d]))
    variables = enc.trainable_variables + head.trainable_variables + dec.trainable_variables + [logits, loc, raw_tril]
    opt = keras.optimizers.Adam(1e-3)

    def loss_and_grads(x, seed):
        with tf.GradientTape() as tape:
            h = head(enc(x))
            mean, scale = h[:, :d], _tril(h[:, d:])
            eps = tf.random.stateless_normal([batch, d], seed)
            z = mean + tf.linalg.matvec(scale, eps)
            log_q = _mvn_log_prob(z, mean, scale)
            comp = _mvn_log_prob(z[:, None], loc, _tril(raw_tril))  # [B, K]
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

    return _time(lambda i: step(tf.constant(i, tf.int64)), steps, 1)


def _time(call, calls: int, steps_per_call: int) -> dict:
    """Time ``calls`` calls of ``call(i)`` after a compiling call and warm-up calls (>= 5 steps)."""
    t0 = time.perf_counter()
    float(call(0))
    compile_s = time.perf_counter() - t0
    warmup = -(-5 // steps_per_call)
    for i in range(1, warmup + 1):  # let tf.data and the allocator settle
        float(call(i))
    t0 = time.perf_counter()
    for i in range(warmup + 1, warmup + calls + 1):
        out = call(i)
    float(out)  # wait for the last step
    dt = (time.perf_counter() - t0) / (calls * steps_per_call)
    return {
        "ms_per_step": 1000 * dt,
        "compile_s": compile_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _worker(kind: str, model: str, jit: str, experiment: str, steps: int, batch: int, precision: str) -> None:
    if kind == "framework":
        result = _framework(model, jit, steps, batch, experiment, precision)
    else:
        result = _bare(model, jit == "true", steps, batch)
    result["examples_per_s"] = batch * 1000 / result["ms_per_step"]
    print("RESULT " + json.dumps(result))


def _median_run(repeats: int, *args: str) -> dict:
    """The run with the median ms/step of ``repeats`` fresh processes (this machine's noise is +-5%)."""
    runs = sorted((_run_worker(*args) for _ in range(repeats)), key=lambda r: r["ms_per_step"])
    return {**runs[len(runs) // 2], "samples_ms_per_step": [r["ms_per_step"] for r in runs]}


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
    run_dir = Path("/tmp/vaemix-bench-memory")
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: an old one would only be evaluated
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "train.py",
            "trainer.epochs=2",
            "trainer.pretrain_epochs=2",
            f"hydra.run.dir={run_dir}",
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


def _row(model: str, jit: str, experiment: str, bares: dict | None, args: argparse.Namespace) -> dict:
    """One table row; ``bares`` caches the bare step by (model, XLA), None for a row with no bare twin."""
    common = ("--steps", str(args.steps), "--batch", str(args.batch), "--precision", args.precision)
    row: dict = {"model": model, "jit": jit, "experiment": experiment}
    row["framework"] = f = _median_run(args.repeats, "framework", model, jit, experiment, *common)
    line = (
        f"{model:5} {experiment:10} jit={jit:5} framework {f['examples_per_s']:6.0f} ex/s {f['ms_per_step']:5.1f} "
        f"ms/step compile {f['compile_s']:4.1f}s rss {f['peak_rss_mb']:5.0f}MB"
    )
    if bares is not None:
        xla = "true" if use_jit(jit, model, args.precision).step else "false"  # the bare step is compiled where ours is
        if (model, xla) not in bares:
            bares[model, xla] = _median_run(args.repeats, "bare", model, xla, experiment, *common)
        row["bare"] = b = bares[model, xla]
        row["bare_xla"] = xla == "true"
        row["overhead"] = f["ms_per_step"] / b["ms_per_step"]
        line += f" | bare xla={xla:5} {b['examples_per_s']:6.0f} ex/s {b['ms_per_step']:5.1f} ms/step"
        line += f" | x{row['overhead']:.3f}"
    print(line, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per cell; the median is reported")
    parser.add_argument("--models", nargs="+", default=["mlp", "conv"])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "throughput.json"))
    parser.add_argument("--train-memory", action="store_true")
    parser.add_argument(
        "--precision", default="float32", help="trainer.precision of the framework rows (the bare step stays float32)"
    )
    parser.add_argument("--worker", nargs=4, metavar=("KIND", "MODEL", "JIT", "EXPERIMENT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(*args.worker, args.steps, args.batch, args.precision)
        return

    # The VaDE step (experiment=vade: no augmentation, no contrastive term) is the bare step's maths;
    # the default recipe's step (augmented views, contrastive term) has no bare twin.
    bares: dict = {}
    rows = [_row(model, jit, "vade", bares, args) for model in args.models for jit in ("false", "auto", "true")]
    rows += [_row(model, "auto", "clustering", None, args) for model in args.models]
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "gpus": [
            tf.config.experimental.get_device_details(g).get("device_name", g.name)
            for g in tf.config.list_physical_devices("GPU")
        ],
        "precision": args.precision,
        "steps": args.steps,
        "batch": args.batch,
        "repeats": args.repeats,
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
