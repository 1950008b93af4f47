"""Clustering quality over seeds: a vaemix experiment against classical baselines on the same split.

    python benchmarks/clustering.py                                  # experiment=clustering, 5 seeds
    python benchmarks/clustering.py --seeds 10 --first-seed 100      # the held-out seeds of the frozen recipe
    python benchmarks/clustering.py --experiment vade --seeds 3
    python benchmarks/clustering.py --normal-prior --iwae-samples 200  # also prior=normal, IWAE NLL of both
    python benchmarks/clustering.py --data digits --seeds 10          # scikit-learn's 8x8 digits as images
    python benchmarks/clustering.py --set data.binarize=static --normal-prior --iwae-samples 1000  # a real NLL

Each seed is a real ``python train.py experiment=<name> seed=<s>`` run; ACC / NMI / ARI are the model's
own clusters (argmax_k p(k|z)) on the *test* split, digits the model never saw. Baselines fit on the
training split and predict the test split: KMeans on pixels, GaussianMixture on 50 PCA components.
Prints mean +- std and writes JSON (with each run's ``pretrain_candidates.json``, where it has one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("cluster_acc", "nmi", "ari")
SIGNALS = ("separation", "confidence", "smallest_share", "elbo")  # label-free: what a user without labels can look at


def _vaemix_run(name: str, overrides: list[str], run_dir: Path, iwae_samples: int) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: never resume an earlier benchmark's
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "train.py", *overrides, f"hydra.run.dir={run_dir}", "trainer.progress=false"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if done.returncode != 0:  # a failed seed is a result too: report it, go on with the others
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        print(f"  {name}: FAILED ({reason})", flush=True)
        return {"failed": reason, "wall_s": wall}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if (candidates := run_dir / "pretrain_candidates.json").is_file():  # trainer.pretrain_candidates > 1
        metrics["pretrain_candidates"] = json.loads(candidates.read_text())
    if iwae_samples:
        subprocess.run(
            [
                sys.executable,
                "evaluate.py",
                f"run_dir={run_dir}",
                f"eval.iwae_samples={iwae_samples}",
                "eval.pictures=false",
            ],
            cwd=ROOT,
            check=True,
            env=env,
            capture_output=True,
        )
        scored = json.loads((run_dir / "eval" / "metrics.json").read_text())
        metrics |= {k: scored[k] for k in ("iwae_nll", "iwae_cross_entropy") if k in scored}
    metrics["wall_s"] = wall
    print(
        f"  {name}: "
        + "  ".join(f"{k} {metrics[k]:.4f}" for k in (*METRICS, *SIGNALS) if k in metrics)
        + (f"  iwae_nll {metrics['iwae_nll']:.2f}" if "iwae_nll" in metrics else "")
        + f"  ({wall:.0f}s)",
        flush=True,
    )
    return metrics


def _data_overrides(name: str, scratch: Path) -> list[str]:
    """``--data``: a vaemix data option, or ``digits``: scikit-learn's 1,797 8x8 digits written as a
    uint8 npz (grey levels 0-16 scaled to 0-255) for ``data=local``, 20% held out."""
    if name != "digits":
        return [f"data={name}"]
    from sklearn.datasets import load_digits

    digits = load_digits()
    path = scratch / "digits8x8.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=np.round(digits.images * 255 / 16).astype(np.uint8), y=digits.target)
    return ["data=local", f"data.images={path}"]


def _baselines(seeds: list[int], data_overrides: list[str]) -> dict[str, list[dict]]:
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from sklearn.mixture import GaussianMixture

    from vaemix.infra.config import DataConfig
    from vaemix.infra.images import load_images
    from vaemix.maths.metrics import cluster_accuracy

    fields = dict(o.removeprefix("data.").split("=", 1) for o in data_overrides if o.startswith("data."))
    data = load_images(DataConfig(name=data_overrides[0].split("=", 1)[1], **fields))
    x = data.train.values.reshape(len(data.train), -1) / 255.0
    xt = data.test.values.reshape(len(data.test), -1) / 255.0
    k = len(np.unique(data.train.labels))
    out: dict[str, list[dict]] = {"kmeans_pixels": [], "gmm_pca50": []}
    for seed in seeds:
        for name in out:
            t0 = time.perf_counter()
            if name == "kmeans_pixels":
                pred = KMeans(k, n_init=10, random_state=seed).fit(x).predict(xt)
            else:
                pca = PCA(50, random_state=seed).fit(x)
                gmm = GaussianMixture(k, covariance_type="full", n_init=3, random_state=seed).fit(pca.transform(x))
                pred = gmm.predict(pca.transform(xt))
            out[name].append(
                {
                    "cluster_acc": cluster_accuracy(data.test.labels, pred),
                    "nmi": float(normalized_mutual_info_score(data.test.labels, pred)),
                    "ari": float(adjusted_rand_score(data.test.labels, pred)),
                    "wall_s": time.perf_counter() - t0,
                }
            )
    return out


def _summary(runs: list[dict]) -> dict[str, list[float]]:
    """Mean and std over the runs that finished; ``failed`` counts the others."""
    ok = [r for r in runs if "failed" not in r]
    keys = [k for k in (*METRICS, "iwae_nll", "iwae_cross_entropy", "elbo", "wall_s") if ok and all(k in r for r in ok)]
    out = {k: [float(np.mean([r[k] for r in ok])), float(np.std([r[k] for r in ok]))] for k in keys}
    return out | {"failed": [float(len(runs) - len(ok)), 0.0]}


def _signals(runs: list[dict]) -> dict[str, float]:
    """Spearman rank correlation of each label-free signal with ACC over the runs that finished."""
    from scipy.stats import spearmanr

    ok = [r for r in runs if "failed" not in r and all(k in r for k in SIGNALS)]
    if len(ok) < 3:
        return {}
    acc = [r["cluster_acc"] for r in ok]
    return {k: float(spearmanr([r[k] for r in ok], acc).statistic) for k in SIGNALS}


def _cell(summary: dict[str, list[float]], key: str, digits: int = 3) -> str:
    if key not in summary:
        return "-"
    mean, std = summary[key]
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="clustering")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--data", default="mnist5k")
    parser.add_argument("--normal-prior", action="store_true", help="also train prior=normal on the same budget")
    parser.add_argument(
        "--normal-seeds", type=int, default=None, help="seeds of the prior=normal runs (default: --seeds)"
    )
    parser.add_argument("--iwae-samples", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], help="more overrides for every vaemix run")
    parser.add_argument("--runs", default="/tmp/vaemix-bench-clustering")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "clustering.json"))
    args = parser.parse_args()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    data = _data_overrides(args.data, Path(args.runs))
    rows: dict[str, list[dict]] = {}
    variants = {args.experiment: ([], seeds)}
    if args.normal_prior:
        normal_seeds = seeds[: args.normal_seeds] if args.normal_seeds else seeds
        variants[f"{args.experiment}+prior=normal"] = (["prior=normal", "prior.init=random"], normal_seeds)
    for name, (extra, variant_seeds) in variants.items():
        print(f"{name} on {args.data}:", flush=True)
        rows[name] = [
            _vaemix_run(
                f"seed {s}",
                [f"experiment={args.experiment}", *data, f"seed={s}", *args.set, *extra],
                Path(args.runs) / name.replace("=", "-") / f"seed{s}",
                args.iwae_samples,
            )
            for s in variant_seeds
        ]
    rows |= _baselines(seeds, data)
    table = {name: _summary(runs) for name, runs in rows.items()}
    print(f"\n{'method':38} {'ACC':>15} {'NMI':>15} {'ARI':>15} {'IWAE NLL':>15} {'wall s':>8}")
    for name, s in table.items():
        iwae = _cell(s, "iwae_nll", 2)
        print(
            f"{name:38} {_cell(s, 'cluster_acc'):>15} {_cell(s, 'nmi'):>15} {_cell(s, 'ari'):>15} {iwae:>15} "
            f"{s['wall_s'][0]:8.0f}" + (f"  ({s['failed'][0]:.0f} failed)" if s["failed"][0] else "")
        )
    signals = {name: _signals(runs) for name, runs in rows.items() if not name.startswith(("kmeans", "gmm"))}
    for name, rho in signals.items():
        if rho:
            print(f"{name}: Spearman rank correlation with ACC: " + ", ".join(f"{k} {v:+.2f}" for k, v in rho.items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    result = {"data": args.data, "seeds": seeds, "summary": table, "signals": signals, "runs": rows}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
