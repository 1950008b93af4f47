"""The mixture density network on one conditional problem in five choices of units.

    python benchmarks/mdn.py            # ~1 min on 2 cores

Data: y = ±x² (each sign equally likely) plus Gaussian noise of deviation 0.05 + 0.1|x|, x uniform on
[-1, 1]; 4,000 rows fitted, 2,000 held out (the problem of ``tests/test_mixture.py``). The MDN (3
components, widths 32-32, 150 epochs, seed 0) is fitted to (a x, b y) for each (a, b) and scored by its
held-out -log p(b y | a x) - log b, which is -log p(y | x) in y's own units: the same number for every
(a, b) when the units do not decide the fit, next to the true conditional's. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
UNITS = [(1.0, 1.0), (1000.0, 1.0), (1e-3, 1.0), (1.0, 1000.0), (1000.0, 1000.0)]


def bimodal(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``x [n, 1]``, ``y [n, 1]`` and the true mean -log p(y | x)."""
    x = rng.uniform(-1, 1, size=(n, 1))
    sign = rng.choice([-1.0, 1.0], size=(n, 1))
    scale = 0.05 + 0.1 * np.abs(x)
    y = sign * x**2 + scale * rng.normal(size=(n, 1))
    pair = np.exp(-0.5 * ((y - x**2) / scale) ** 2) + np.exp(-0.5 * ((y + x**2) / scale) ** 2)
    return x, y, float(-np.mean(np.log(0.5 * pair / (scale * np.sqrt(2 * np.pi)))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mdn-units.json"))
    args = parser.parse_args()
    from vaemix.maths.mixture import MixtureDensityNetwork

    rows = []
    for a, b in UNITS:
        rng = np.random.default_rng(0)
        (x, y, _), (xt, yt, true) = bimodal(rng, 4000), bimodal(rng, 2000)
        mdn, t0 = MixtureDensityNetwork(1, 1, components=3, hidden=(32, 32), seed=0), time.perf_counter()
        mdn.fit(x * a, y * b, epochs=args.epochs)
        nll = mdn.nll(xt * a, yt * b) - np.log(b)  # -log p(y | x) in y's own units
        rows.append({"x_times": a, "y_times": b, "nll": nll, "true_nll": true, "seconds": time.perf_counter() - t0})
        seconds = rows[-1]["seconds"]
        print(f"x * {a:<6g} y * {b:<6g}  held-out -log p(y|x) {nll:9.4f}   true {true:.4f}   {seconds:.1f} s")
    Path(args.out).write_text(json.dumps({"epochs": args.epochs, "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
