"""The mixture toolkit against scikit-learn: fit time and held-out log-likelihood, and HMC's ESS/s.

    python benchmarks/mixture.py                 # N in {1e3, 1e4, 1e5} x D in {2, 10, 50}
    python benchmarks/mixture.py --quick         # N in {1e3, 1e4} x D in {2, 10}

Data: K=5 generated blobs (``vaemix.mixture.tasks.blobs``), 80% to fit, 20% held out. vaemix's
``GaussianMixture`` (EM, full covariance) against ``sklearn.mixture.GaussianMixture`` with the same
number of restarts; vaemix's ``BayesianGaussianMixture(method="svi")`` (diagonal) against
``sklearn.mixture.BayesianGaussianMixture`` (variational, full). HMC is timed on D=2 only.
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


ROOT = Path(__file__).resolve().parents[1]
K = 5


def _timed(fit) -> tuple[object, float]:
    t0 = time.perf_counter()
    model = fit()
    return model, time.perf_counter() - t0


def run(n: int, d: int, seed: int = 0) -> dict:
    from sklearn.mixture import BayesianGaussianMixture as SkBGMM
    from sklearn.mixture import GaussianMixture as SkGMM

    from vaemix.infra.tables import blobs
    from vaemix.maths.mixture import BayesianGaussianMixture, GaussianMixture

    x, _ = blobs(n, d, K, separation=3.0, seed=seed)
    fit, held = x[: int(0.8 * n)], x[int(0.8 * n) :]
    row: dict = {"n": n, "d": d}
    ours, row["gmm_s"] = _timed(lambda: GaussianMixture(K, n_init=2, seed=seed).fit(fit))
    sk, row["sk_gmm_s"] = _timed(lambda: SkGMM(K, n_init=2, random_state=seed).fit(fit))
    row["gmm_ll"], row["sk_gmm_ll"] = float(ours.log_prob(held).mean()), float(sk.score(held))
    ours, row["svi_s"] = _timed(lambda: BayesianGaussianMixture(K, seed=seed).fit(fit, "svi", epochs=50))
    sk, row["sk_bgmm_s"] = _timed(lambda: SkBGMM(n_components=K, random_state=seed, max_iter=200).fit(fit))
    row["svi_ll"] = float(ours.distribution.log_prob(held).numpy().mean())
    row["sk_bgmm_ll"] = float(sk.score(held))
    return row


def hmc(n: int = 1000, seed: int = 0) -> dict:
    from vaemix.infra.tables import blobs
    from vaemix.maths.mixture import BayesianGaussianMixture

    x, _ = blobs(n, 2, 3, separation=3.0, seed=seed)
    post = BayesianGaussianMixture(3, seed=seed).fit(x, "hmc").posterior
    return {"n": n, **post.diagnostics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mixture.json"))
    args = parser.parse_args()
    sizes = [1000, 10_000] if args.quick else [1000, 10_000, 100_000]
    dims = [2, 10] if args.quick else [2, 10, 50]
    print(
        f"{'N':>7} {'D':>3} | {'EM s':>7} {'sk s':>7} {'EM ll':>9} {'sk ll':>9} | "
        f"{'SVI s':>7} {'skB s':>7} {'SVI ll':>9} {'skB ll':>9}"
    )
    rows = []
    for n in sizes:
        for d in dims:
            r = run(n, d)
            rows.append(r)
            em = f"{r['gmm_s']:7.2f} {r['sk_gmm_s']:7.2f} {r['gmm_ll']:9.3f} {r['sk_gmm_ll']:9.3f}"
            svi = f"{r['svi_s']:7.2f} {r['sk_bgmm_s']:7.2f} {r['svi_ll']:9.3f} {r['sk_bgmm_ll']:9.3f}"
            print(f"{n:>7} {d:>3} | {em} | {svi}", flush=True)
    h = hmc()
    print(
        f"HMC (N={h['n']}, D=2, K=3, 4 chains x 500 draws): acceptance {h['acceptance_rate']:.2f}, "
        f"min ESS {h['min_ess']:.0f}, max R-hat {h['max_rhat']:.3f}, {h['ess_per_second']:.1f} ESS/s"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "hmc": h}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
