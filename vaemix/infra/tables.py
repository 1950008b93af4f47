"""Tabular data: generated Gaussian blobs, or ``[N, D]`` rows from a ``.npz`` or ``.csv`` file."""

from __future__ import annotations

import numpy as np

from vaemix.errors import VaemixError
from vaemix.infra.arrays import existing_file, read_npz
from vaemix.infra.config import DataConfig
from vaemix.maths.streams import Stream


def blobs(n: int, dims: int, clusters: int, separation: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points from ``clusters`` Gaussians in ``dims`` dims whose means are ``separation`` * N(0, I)
    apart and whose covariances are random with unit-order scale; returns ``x [n, dims]``, labels ``[n]``."""
    rng = np.random.default_rng([seed, Stream.BLOBS])
    means = rng.normal(size=(clusters, dims)) * separation
    a = rng.normal(size=(clusters, dims, dims)) / np.sqrt(dims)
    covs = a @ a.transpose(0, 2, 1) + 0.3 * np.eye(dims)
    labels = rng.choice(clusters, size=n, p=rng.dirichlet(np.full(clusters, 5.0)))
    x = means[labels] + np.einsum("nij,nj->ni", np.linalg.cholesky(covs)[labels], rng.normal(size=(n, dims)))
    return x, labels


def read_table(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``x`` (and labels ``y`` if the .npz has them) from a .npz, or every column of a .csv."""
    p = existing_file(path)
    if p.suffix == ".npz":
        return read_npz(p, "x").astype(np.float64), read_npz(p, "y", optional=True)
    try:
        try:
            return np.loadtxt(p, delimiter=",", ndmin=2), None
        except ValueError:
            return np.loadtxt(p, delimiter=",", ndmin=2, skiprows=1), None  # a header row
    except (OSError, ValueError) as e:
        raise VaemixError(f"{p}: not a readable table ({str(e)[:200]})") from None


def load_table(d: DataConfig, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows ``d`` names: ``data=blobs`` (generated) or ``data=table`` (``data.path``)."""
    if d.name == "blobs":
        return blobs(d.n, d.dims, d.clusters, d.separation, seed)
    assert d.path is not None
    return read_table(d.path)
