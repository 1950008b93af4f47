"""The mixture toolkit against scikit-learn on equal terms, streaming past memory, and HMC against the old sampler.

    python benchmarks/mixture.py              # the grid N in {1e3 .. 1e6} x D in {2, 10, 50}, SVI, HMC, streaming
    python benchmarks/mixture.py --quick      # N in {1e3, 1e4} x D in {2, 10}, SVI at 1e4 x 10, HMC

Data: K=5 generated blobs with random full covariances (``vaemix.infra.tables.blobs``); N rows are fitted
and N/4 more are held out. Every cell runs in a fresh process, so the times are those of a user's one
``fit`` call, TensorFlow's tracing included.

- **EM**: ``vaemix...GaussianMixture`` against ``sklearn.mixture.GaussianMixture``, both full covariance,
  float64, ``n_init=5``, ``tol=1e-3``, ``max_iter=100``, ``reg_covar=1e-6``. Held-out mean log-likelihood.
- **SVI**: ``BayesianGaussianMixture(covariance="full").fit(x, "svi")`` against scikit-learn's variational
  ``BayesianGaussianMixture`` with the same priors (Dirichlet(1) weights, mean precision 1, the data's
  covariance and D degrees of freedom for the Wishart), each with its own defaults for stopping. Both are
  scored by the plug-in mixture at their posterior means (scikit-learn's ``score`` would use expectations).
- **HMC**: today's sampler against the one at commit 74c68e7 (read from git), same data (N=1000, D=2,
  K=3), chains, draws and burn-in; effective samples per second of the whole call.
- **Streaming**: EM on a 1e6 x 50 ``.npy`` memmap in blocks of 65,536 rows; peak RSS of that process
  against its RSS before the fit.
Prints tables and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
K, N_INIT, TOL, MAX_ITER, BLOCK = 5, 5, 1e-3, 100, 65_536
OLD_HMC = "74c68e7"


def _data(n: int, d: int, seed: int = 0):
    from vaemix.infra.tables import blobs

    x, _ = blobs(n + n // 4, d, K, separation=3.0, seed=seed)
    return x[:n], x[n:]


def _timed(fit) -> tuple[object, float]:
    t0 = time.perf_counter()
    model = fit()
    return model, time.perf_counter() - t0


def _plug_in(weights, means, covs, x) -> float:
    import numpy as np

    from vaemix.maths.priors import gaussian_mixture

    return float(gaussian_mixture(np.log(weights), means, np.linalg.cholesky(covs)).log_prob(x).numpy().mean())


def em_cell(n: int, d: int) -> dict:
    from sklearn.mixture import GaussianMixture as SkGMM

    from vaemix.maths.mixture import GaussianMixture

    fit, held = _data(n, d)
    options = {"n_init": N_INIT, "tol": TOL, "max_iter": MAX_ITER, "reg_covar": 1e-6}
    ours, ours_s = _timed(lambda: GaussianMixture(K, "full", seed=0, **options).fit(fit))
    sk, sk_s = _timed(lambda: SkGMM(K, covariance_type="full", random_state=0, **options).fit(fit))
    ll, sk_ll = float(ours.log_prob(held).mean()), float(sk.score(held))
    return {"n": n, "d": d, "ours_s": ours_s, "sk_s": sk_s, "ours_ll": ll, "sk_ll": sk_ll}


def svi_cell(n: int, d: int) -> dict:
    from sklearn.mixture import BayesianGaussianMixture as SkBGMM

    from vaemix.maths.mixture import BayesianGaussianMixture

    fit, held = _data(n, d)
    ours, ours_s = _timed(lambda: BayesianGaussianMixture(K, "full", seed=0).fit(fit, "svi"))
    sk_model = SkBGMM(
        n_components=K,
        weight_concentration_prior_type="dirichlet_distribution",
        weight_concentration_prior=1.0,
        random_state=0,
    )
    sk, sk_s = _timed(lambda: sk_model.fit(fit))
    p = ours.posterior
    ll, sk_ll = (
        _plug_in(p.weights, p.means, p.covariances, held),
        _plug_in(sk.weights_, sk.means_, sk.covariances_, held),
    )
    return {"n": n, "d": d, "ours_s": ours_s, "sk_s": sk_s, "ours_ll": ll, "sk_ll": sk_ll}


def hmc_cell() -> dict:
    import importlib.util

    from vaemix.maths.mixture import hmc

    old_source = subprocess.run(
        ["git", "show", f"{OLD_HMC}:vaemix/maths/mixture/hmc.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(old_source)
    spec = importlib.util.spec_from_file_location("hmc_old", f.name)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    import numpy as np

    x = np.concatenate(_data(800, 2))  # 1000 rows: the 800 and their held-out quarter
    z = (x - x.mean(0)) / x.std(0)
    row = {"n": len(z), "d": 2, "k": 3, "chains": 4, "draws": 500, "burnin": 500}
    for name, module in (("old", old), ("new", hmc)):
        (_, _, _, diag), seconds = _timed(lambda m=module: m.fit_hmc(z, 3, 1.0, 2.0, 0))
        row[name] = {**diag, "call_s": seconds, "ess_per_call_second": diag["min_ess"] / seconds}
    return row


def stream_cell(n: int = 1_000_000, d: int = 50) -> dict:
    import numpy as np

    from vaemix.maths.mixture import GaussianMixture

    path = Path(tempfile.gettempdir()) / f"vaemix-bench-stream-{n}x{d}.npy"
    subprocess.run([sys.executable, __file__, "--write", str(path), str(n), str(d)], check=True)
    x = np.load(path, mmap_mode="r")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gmm, seconds = _timed(lambda: GaussianMixture(K, "full", n_init=1, seed=0, block=BLOCK).fit(x))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    path.unlink()
    batch_mb = BLOCK * d * 8 / 2**20
    return {
        "n": n,
        "d": d,
        "fit_s": seconds,
        "rss_before_mb": before,
        "peak_rss_mb": peak,
        "batch_mb": batch_mb,
        "iterations": gmm.n_iter_,
    }


def write_npy(path: str, n: int, d: int) -> None:
    """Blobs written 65,536 rows at a time: the file is never in this process's memory whole."""
    import numpy as np

    from vaemix.infra.tables import blobs

    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n, d))
    for i, start in enumerate(range(0, n, BLOCK)):
        rows = min(BLOCK, n - start)
        out[start : start + rows] = blobs(rows, d, K, separation=3.0, seed=0, sample_seed=i)[0]
    out.flush()


CELLS = {"em": em_cell, "svi": svi_cell, "hmc": hmc_cell, "stream": stream_cell}


def _in_fresh_process(kind: str, *args: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--cell", kind, *map(str, args)], capture_output=True, text=True, cwd=ROOT
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _print_versus(title: str, rows: list[dict]) -> None:
    print(
        f"\n{title}\n{'N':>9} {'D':>3} | {'ours s':>8} {'sk s':>8} {'ratio':>6} | "
        f"{'ours ll':>10} {'sk ll':>10} {'rel':>9}"
    )
    for r in rows:
        r["time_ratio"], r["ll_rel"] = r["ours_s"] / r["sk_s"], (r["ours_ll"] - r["sk_ll"]) / abs(r["sk_ll"])
        print(
            f"{r['n']:>9,} {r['d']:>3} | {r['ours_s']:8.2f} {r['sk_s']:8.2f} {r['time_ratio']:6.2f} | "
            f"{r['ours_ll']:10.4f} {r['sk_ll']:10.4f} {r['ll_rel']:+9.2e}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mixture.json"))
    parser.add_argument("--cell", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--write", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:
        return write_npy(args.write[0], int(args.write[1]), int(args.write[2]))
    if args.cell:
        return print(json.dumps(CELLS[args.cell[0]](*map(int, args.cell[1:]))))
    sizes = [1000, 10_000] if args.quick else [1000, 10_000, 100_000, 1_000_000]
    dims = [2, 10] if args.quick else [2, 10, 50]
    em = [_in_fresh_process("em", n, d) for n in sizes for d in dims]
    _print_versus(f"EM, full covariance, K={K}, n_init={N_INIT}, tol={TOL}, max_iter={MAX_ITER} (vs sklearn GMM)", em)
    svi_grid = [(10_000, 10)] if args.quick else [(n, d) for n in (10_000, 100_000) for d in (10, 50)]
    svi = [_in_fresh_process("svi", n, d) for n, d in svi_grid]
    _print_versus(f"SVI, full covariance, K={K} (vs sklearn BayesianGaussianMixture, plug-in held-out ll)", svi)
    h = _in_fresh_process("hmc")
    print(f"\nHMC (N={h['n']}, D=2, K=3, 4 chains x 500 draws after 500 burn-in), whole fit_hmc call:")
    for name in ("old", "new"):
        r = h[name]
        print(
            f"  {name} ({OLD_HMC if name == 'old' else 'now'}): {r['call_s']:.1f} s, "
            f"acceptance {r['acceptance_rate']:.2f}, "
            f"min ESS {r['min_ess']:.0f}, max R-hat {r['max_rhat']:.3f}, {r['ess_per_call_second']:.1f} ESS/s"
        )
    h["speedup"] = h["new"]["ess_per_call_second"] / h["old"]["ess_per_call_second"]
    print(f"  ESS/s ratio new/old: {h['speedup']:.1f}x")
    stream = None if args.quick else _in_fresh_process("stream")
    if stream:
        print(
            f"\nStreaming EM, {stream['n']:,} x {stream['d']} .npy memmap in blocks of {BLOCK:,} "
            f"({stream['batch_mb']:.0f} MB): {stream['fit_s']:.1f} s, {stream['iterations']} iterations, "
            f"RSS {stream['rss_before_mb']:.0f} MB before the fit, peak {stream['peak_rss_mb']:.0f} MB "
            f"(+{stream['peak_rss_mb'] - stream['rss_before_mb']:.0f} MB)"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"em": em, "svi": svi, "hmc": h, "stream": stream}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
