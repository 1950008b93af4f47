"""Vectors through the VAE: the default ``data=table`` recipe against classical clustering, and a scale run.

    python benchmarks/tabular.py                       # 4 datasets x 5 seeds, baselines (~1 h on 2 cores)
    python benchmarks/tabular.py --datasets wine iris --seeds 2
    python benchmarks/tabular.py --datasets digits --seeds 5 --first-seed 5    # seeds 5-9
    python benchmarks/tabular.py --datasets digits --no-scale --set data.corrupt_fraction=0.4   # a recipe variant
    python benchmarks/tabular.py --datasets wide mnist300 --no-scale                 # few rows, many features
    python benchmarks/tabular.py --scale-only          # 1,000,000 generated 128-d rows from a .npy
    python benchmarks/tabular.py --task gmm --datasets digits wine iris --seeds 3 --no-scale   # the toolkit's EM
    python benchmarks/tabular.py --datasets wide --pretrained-from /tmp/vaemix-bench-tabular --work /tmp/b  # reuse

Real data, but for one generated set: scikit-learn's bundled ``load_digits`` (64-d), ``load_wine`` (13-d),
``load_iris`` (4-d), and MNIST-5k's pixels as 784-d vectors; for few rows of many features, its first 300
digits (``mnist300``) and a generated ``wide`` set (300 rows, 5,000 features, three groups).
Each is written to a .npz (x, y); the VAE is a real
``python train.py data=table data.path=<npz> prior.components=<classes> seed=<s>`` run, its clusters the
model's own. Held-out ACC / NMI / ARI are on the recipe's own test split (``data.test_fraction``, 20%);
for the small sets (a few dozen held-out rows) ACC on all rows too (predict.py). ``--task gmm`` runs the
toolkit's EM instead (``python train.py task=gmm task.components=<classes> ...``). Baselines on the same
split, same K: scikit-learn ``GaussianMixture`` (full covariance, n_init=10) on the standardised features
(PCA-50 of them where D > 50), and ``KMeans`` (n_init=10) on the raw and on the standardised features.
The scale run trains one pretraining and one ELBO epoch on 1,000,000 rows of a 128-d ten-blob mixture read
from a .npy, and reports the steady-state rows/s of each phase (the median rate between TensorBoard's
train/loss points in the middle 80% of the phase) and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
METRICS = ("cluster_acc", "nmi", "ari")


def _datasets(work: Path, names: list[str]) -> dict[str, Path]:
    from sklearn import datasets

    out = {}
    for name in names:
        if name in ("mnist784", "mnist300"):
            from vaemix.infra.config import DataConfig
            from vaemix.infra.images import load_image_split

            examples = load_image_split(DataConfig(name="mnist5k"), "all")
            x, y = examples.values.reshape(len(examples), -1).astype(np.float32) / 255.0, examples.labels
            x, y = (x[:300], y[:300]) if name == "mnist300" else (x, y)
        elif name == "wide":  # generated: three groups of 100 rows, 5,000 features (a gene panel's shape)
            rng = np.random.default_rng(0)
            y = np.repeat(np.arange(3), 100)
            x = (0.5 * rng.normal(size=(3, 5000))[y] + rng.normal(size=(300, 5000))).astype(np.float32)
        else:
            x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
        np.savez(work / f"{name}.npz", x=x, y=y)
        out[name] = work / f"{name}.npz"
    return out


def _ours(
    path: Path, k: int, seed: int, run_dir: Path, all_rows: bool, overrides: list[str], reuse: Path | None, task: str
) -> dict:
    shutil.rmtree(run_dir, ignore_errors=True)
    for source in sorted(reuse.glob("checkpoints/pretrain*")) if reuse else []:
        shutil.copytree(source, run_dir / "checkpoints" / source.name)  # the run restores it, pretrains no more
    t0 = time.perf_counter()
    cmd = [
        sys.executable,
        "train.py",
        "data=table",
        f"data.path={path}",
        *([f"prior.components={k}"] if task == "vae" else [f"task={task}", f"task.components={k}"]),
        f"seed={seed}",
        "trainer.progress=false",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        return {"failed": done.stderr.strip().splitlines()[-1], "wall_s": wall}
    row = json.loads((run_dir / "metrics.json").read_text()) | {"wall_s": wall}
    if all_rows:
        subprocess.run(
            [sys.executable, "predict.py", f"run_dir={run_dir}"], cwd=ROOT, env=ENV, capture_output=True, check=True
        )
        from vaemix.maths.metrics import cluster_accuracy

        predicted = np.load(run_dir / "predictions" / f"{path.stem}.npz")["cluster"]
        row["acc_all_rows"] = cluster_accuracy(np.load(path)["y"], predicted)
    return row


def _baselines(path: Path, k: int, seed: int) -> dict[str, dict]:
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from sklearn.mixture import GaussianMixture
    from sklearn.preprocessing import StandardScaler

    from vaemix.infra.arrays import held_out_split
    from vaemix.maths.metrics import cluster_accuracy

    data = np.load(path)
    x, y = data["x"].astype(np.float64), data["y"]
    train, test = held_out_split(len(x), 0.2)
    scaler = StandardScaler().fit(x[train])
    z = scaler.transform(x)
    if x.shape[1] > 50:
        z = PCA(50, random_state=seed).fit(z[train]).transform(z)
    models = {
        "gmm": (GaussianMixture(k, covariance_type="full", n_init=10, random_state=seed), z),
        "kmeans_raw": (KMeans(k, n_init=10, random_state=seed), x),
        "kmeans_standardised": (KMeans(k, n_init=10, random_state=seed), scaler.transform(x)),
    }
    out = {}
    for name, (model, features) in models.items():
        t0 = time.perf_counter()
        model.fit(features[train])
        pred, every = model.predict(features[test]), model.predict(features)
        out[name] = {
            "cluster_acc": cluster_accuracy(y[test], pred),
            "nmi": normalized_mutual_info_score(y[test], pred),
            "ari": adjusted_rand_score(y[test], pred),
            "acc_all_rows": cluster_accuracy(y, every),
            "wall_s": time.perf_counter() - t0,
        }
    return out


def _steady_rates(run_dir: Path) -> dict[str, float]:
    import tensorflow as tf

    points: dict[str, list] = {"pretrain/loss": [], "train/loss": []}
    for path in glob.glob(str(run_dir / "tensorboard" / "events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag in points:
                    points[value.tag].append((event.step, event.wall_time))
    rates = {}
    for tag, pts in points.items():
        steps, times = np.array(sorted(pts)).T
        lo, hi = int(0.1 * len(steps)), int(0.9 * len(steps))
        rates[tag.split("/")[0]] = float(1.0 / np.median(np.diff(times[lo:hi]) / np.diff(steps[lo:hi])))
    return rates


def scale_run(work: Path, overrides: list[str], rows: int = 1_000_000, dims: int = 128, batch: int = 256) -> dict:
    path, run_dir = work / "scale.npy", work / "scale-run"
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, dims)) * 2
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, dims))
    for start in range(0, rows, 100_000):  # written in chunks: never the whole array in memory
        labels = rng.integers(0, 10, 100_000)
        out[start : start + 100_000] = centres[labels] + rng.normal(size=(100_000, dims))
    out.flush()
    del out
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    done = subprocess.run(
        [
            "/usr/bin/time",
            "-f",
            "%M",
            sys.executable,
            "train.py",
            "data=table",
            f"data.path={path}",
            "trainer.pretrain_epochs=1",
            "trainer.epochs=1",
            "trainer.progress=false",
            f"hydra.run.dir={run_dir}",
            *overrides,
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    rates = _steady_rates(run_dir)
    return {
        "rows": rows,
        "dims": dims,
        "wall_s": time.perf_counter() - t0,
        "peak_rss_mb": int(done.stderr.strip().splitlines()[-1]) / 1024,
        **{f"{phase}_rows_per_s": rate * batch for phase, rate in rates.items()},
    }


def _summary(rows: list[dict], key: str) -> str:
    values = [r[key] for r in rows if key in r]
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["digits", "wine", "iris", "mnist784"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--task", default="vae", help="vae (the recipe) or a toolkit task (gmm, bgmm_svi) instead")
    parser.add_argument("--scale-only", action="store_true")
    parser.add_argument("--no-scale", action="store_true")
    parser.add_argument("--set", nargs="*", default=[], help="more overrides for every vaemix run")
    parser.add_argument("--work", default="/tmp/vaemix-bench-tabular")
    parser.add_argument(
        "--pretrained-from",
        type=Path,
        help="an earlier run's --work: each run starts from the same seed's pretrained candidates there "
        "(for variants of what comes after pretraining, which then costs no time)",
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tabular.json"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    ours = "vae" if args.task == "vae" else f"vaemix_{args.task}"  # the baselines' own GMM is "gmm"
    result: dict = {"seeds": args.seeds, "first_seed": args.first_seed, "task": args.task, "overrides": args.set}
    result["datasets"] = {}
    if args.pretrained_from:
        result["pretrained_from"] = str(args.pretrained_from)
    for name, path in ({} if args.scale_only else _datasets(work, args.datasets)).items():
        k = len(np.unique(np.load(path)["y"]))
        small = name in ("wine", "iris", "wide", "mnist300")  # a few dozen held-out rows: all rows too
        reuse = {s: args.pretrained_from / name / f"seed{s}" if args.pretrained_from else None for s in seeds}
        runs = [_ours(path, k, s, work / name / f"seed{s}", small, args.set, reuse[s], args.task) for s in seeds]
        base = [_baselines(path, k, s) for s in seeds]
        result["datasets"][name] = {"k": k, ours: runs, **{b: [r[b] for r in base] for b in base[0]}}
        print(f"\n{name} (K={k}): {'method':22} {'ACC':>15} {'NMI':>15} {'ARI':>15} {'ACC all rows':>15} {'s':>6}")
        for method in (ours, *base[0]):
            r = result["datasets"][name][method]
            print(
                f"{'':{len(name) + 8}} {method:22} {_summary(r, 'cluster_acc'):>15} {_summary(r, 'nmi'):>15} "
                f"{_summary(r, 'ari'):>15} {_summary(r, 'acc_all_rows'):>15} {np.mean([x['wall_s'] for x in r]):6.1f}",
                flush=True,
            )
    if not args.no_scale:
        result["scale"] = s = scale_run(work, args.set)
        print(
            f"\nscale: {s['rows']:,} x {s['dims']} rows from a .npy: pretraining {s['pretrain_rows_per_s']:,.0f} "
            f"rows/s, ELBO phase {s['train_rows_per_s']:,.0f} rows/s (steady state), "
            f"peak RSS {s['peak_rss_mb']:,.0f} MB, {s['wall_s']:.0f} s in all"
        )
    Path(args.out).write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
