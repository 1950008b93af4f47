"""Using a trained model: predict.py end to end and the exported ``cluster`` function, on 10,000 images.

    python benchmarks/prediction.py                 # trains a short default run first (~1 min)
    python benchmarks/prediction.py --run-dir outputs/2026-11-24/10-00-00

The model is the default recipe's (VaDE MLP 784-500-500-2000-10, K=10); speed does not depend on how long
it trained, so a short run serves. Data: MNIST-5k twice (10,000 images) as one .npz. Rows:
- ``predict.py`` as a user runs it (a fresh process, TensorFlow's start included), wall time and peak RSS,
  without and with ``predict.iwae_samples``;
- the exported SavedModel in a fresh process that imports TensorFlow only: ``tf.saved_model.load`` time,
  then ``cluster`` on uint8 batches of 500 (median of 5 passes over the 10,000 images after a warm-up).
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

SERVE = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    t0 = time.perf_counter()
    import tensorflow as tf
    imported = time.perf_counter()
    model = tf.saved_model.load(sys.argv[1])
    loaded = time.perf_counter()
    images = np.load(sys.argv[2])["x"]
    batches = [tf.constant(images[i : i + 500]) for i in range(0, len(images), 500)]
    cluster = model.signatures["cluster"]
    for b in batches[:4]:
        cluster(images=b)
    passes = []
    for _ in range(5):
        t = time.perf_counter()
        for b in batches:
            out = cluster(images=b)
        out["cluster"].numpy()
        passes.append(time.perf_counter() - t)
    print(json.dumps({"tf_import_s": imported - t0, "load_s": loaded - imported,
                      "images_per_s": len(images) / float(np.median(passes)), "passes_s": passes}))
""")


def _timed(argv: list[str]) -> dict:
    """Wall seconds and peak RSS (MB) of a fresh process, as ``/usr/bin/time`` measures it."""
    t0 = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], cwd=ROOT, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"{argv} failed:\n{done.stderr[-3000:]}")
    return {"wall_s": wall, "peak_rss_mb": int(done.stderr.strip().splitlines()[-1]) / 1024, "stdout": done.stdout}


def _data(path: Path) -> Path:
    from vaemix.infra.config import DataConfig
    from vaemix.infra.images import load_image_split

    examples = load_image_split(DataConfig(name="mnist5k"), "all")
    images, labels = examples.values, examples.labels
    np.savez(path, x=np.concatenate([images, images]), y=np.concatenate([labels, labels]))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default=None, help="a trained default-model run (default: train a short one)")
    parser.add_argument("--work", default="/tmp/vaemix-bench-prediction")
    parser.add_argument("--iwae-samples", type=int, default=100)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "prediction.json"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    run_dir = Path(args.run_dir) if args.run_dir else work / "run"
    if not args.run_dir and not (run_dir / "metrics.json").exists():
        _timed(
            [
                sys.executable,
                "train.py",
                "trainer.pretrain_epochs=2",
                "trainer.epochs=1",
                "trainer.progress=false",
                f"hydra.run.dir={run_dir}",
            ]
        )
    data = _data(work / "mnist10k.npz")
    predict = [sys.executable, "predict.py", f"run_dir={run_dir}", "data=local", f"data.images={data}"]
    rows = {
        "predict.py": _timed([*predict, f"predict.out={work / 'p'}"]),
        f"predict.py iwae_samples={args.iwae_samples}": _timed(
            [*predict, f"predict.iwae_samples={args.iwae_samples}", f"predict.out={work / 'pi'}"]
        ),
    }
    export = _timed([sys.executable, "export.py", f"run_dir={run_dir}"])
    path = export["stdout"].split("exported to ")[1].split()[0]
    (work / "serve.py").write_text(SERVE)
    done = subprocess.run(
        [sys.executable, str(work / "serve.py"), path, str(data)], env=ENV, capture_output=True, text=True, check=True
    )
    served = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{'what':38} {'wall s':>8} {'peak RSS MB':>12} {'images/s':>10}")
    for name, r in rows.items():
        print(f"{name:38} {r['wall_s']:8.1f} {r['peak_rss_mb']:12.0f} {10_000 / r['wall_s']:10.0f}")
    print(f"{'export.py':38} {export['wall_s']:8.1f} {export['peak_rss_mb']:12.0f}")
    load = f"(tf.saved_model.load {served['load_s']:.2f} s after a {served['tf_import_s']:.1f} s TF import)"
    print(f"{'exported cluster (batch 500)':38} {'':8} {'':12} {served['images_per_s']:10.0f}   {load}")
    result = {
        "machine": f"{os.cpu_count()} cpus",
        "run_dir": str(run_dir),
        "images": 10_000,
        "rows": {k: {x: v for x, v in r.items() if x != "stdout"} for k, r in rows.items()},
        "export": {x: v for x, v in export.items() if x != "stdout"},
        "served": served,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
