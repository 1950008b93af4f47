"""k-means with k-means++ seeding: the toolkit's hard clustering and EM's starting point."""

from __future__ import annotations

import numpy as np

from vaemix.maths.mixture.checks import check_data


def kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator, trials: int | None = None) -> np.ndarray:
    """``k`` initial centres ``[k, D]`` by greedy k-means++ (scikit-learn's): each new centre is the best,
    by the sum of squared distances it leaves, of ``trials`` (default 2 + log k) candidates drawn with
    probability proportional to their squared distance from the centres already chosen. The greedy choice
    matters: one candidate a centre gave the VAE's prior fits that merged more digits."""
    trials = trials or 2 + int(np.log(k))
    squares = np.sum(x**2, axis=1)  # [N]

    def distances(rows: np.ndarray) -> np.ndarray:  # [T, N] squared distances of x from x[rows]
        return np.maximum(squares[rows][:, None] - 2 * x[rows] @ x.T + squares[None], 0.0)

    first = int(rng.integers(len(x)))
    centres, d2 = [first], distances(np.array([first]))[0]
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(x), 1 / len(x))
        candidates = rng.choice(len(x), trials, p=p)
        left = np.minimum(d2[None], distances(candidates))  # [T, N]: what each candidate would leave
        best = int(np.argmin(left.sum(axis=1)))
        centres.append(int(candidates[best]))
        d2 = left[best]
    return x[centres]


def lloyd(x: np.ndarray, centres: np.ndarray, iters: int = 100) -> tuple[np.ndarray, np.ndarray, float]:
    """Lloyd's iterations from ``centres`` until no point changes cluster (or ``iters``): the centres,
    labels ``[N]`` and inertia."""
    k, previous = len(centres), None
    for _ in range(iters):
        d2 = np.sum(centres**2, 1)[None] - 2 * x @ centres.T  # |x - c|^2 less |x|^2, which ties every c
        labels = np.argmin(d2, axis=1)
        if previous is not None and np.array_equal(labels, previous):
            break
        onehot = np.zeros((len(x), k))
        onehot[np.arange(len(x)), labels] = 1.0  # [N, K]; np.eye(k)[labels] builds it more slowly
        counts = onehot.sum(0)[:, None]
        centres = np.where(counts > 0, onehot.T @ x / np.maximum(counts, 1), centres)  # an empty one stays put
        previous = labels
    return centres, labels, float(np.sum(np.min(d2, axis=1)) + np.sum(x**2))


def kmeans(x: np.ndarray, k: int, seed: int = 0, n_init: int = 10, iters: int = 100) -> np.ndarray:
    """Lloyd's k-means from k-means++ seeds, best of ``n_init`` by inertia; returns labels ``[N]``."""
    x = check_data(x, k)
    rng = np.random.default_rng(seed)
    best, best_inertia = None, np.inf
    for _ in range(n_init):
        _, labels, inertia = lloyd(x, kmeans_plus_plus(x, k, rng), iters)
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return best
