"""``python train.py task=gmm|bgmm_svi|bgmm_hmc|mdn data=blobs|table``: the toolkit on tabular data,
with the same run dir, TensorBoard scalars and ``metrics.json`` as the VAE."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from vaemix.config import Config, DataConfig
from vaemix.errors import UserError
from vaemix.summaries import Summaries, write_json

log = logging.getLogger("vaemix")


def blobs(n: int, dims: int, clusters: int, separation: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points from ``clusters`` Gaussians in ``dims`` dims whose means are ``separation`` * N(0, I)
    apart and whose covariances are random with unit-order scale; returns ``x [n, dims]``, labels ``[n]``."""
    rng = np.random.default_rng([seed, 5])
    means = rng.normal(size=(clusters, dims)) * separation
    a = rng.normal(size=(clusters, dims, dims)) / np.sqrt(dims)
    covs = a @ a.transpose(0, 2, 1) + 0.3 * np.eye(dims)
    labels = rng.choice(clusters, size=n, p=rng.dirichlet(np.full(clusters, 5.0)))
    x = means[labels] + np.einsum("nij,nj->ni", np.linalg.cholesky(covs)[labels], rng.normal(size=(n, dims)))
    return x, labels


def read_table(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``x`` (and labels ``y`` if the .npz has them) from a .npz, or every column of a .csv."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"data file {str(p)!r} does not exist")
    try:
        if p.suffix == ".npz":
            with np.load(p) as f:
                if "x" not in f:
                    raise UserError(f"{p}: no array 'x' in the .npz (it has: {', '.join(f.files)})")
                return f["x"].astype(np.float64), (f["y"] if "y" in f else None)
        try:
            return np.loadtxt(p, delimiter=",", ndmin=2), None
        except ValueError:
            return np.loadtxt(p, delimiter=",", ndmin=2, skiprows=1), None  # a header row
    except (OSError, ValueError) as e:
        raise UserError(f"{p}: not a readable table ({str(e)[:200]})") from None


def load_table(d: DataConfig, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    if d.name == "blobs":
        return blobs(d.n, d.dims, d.clusters, d.separation, seed)
    assert d.path is not None
    return read_table(d.path)


def _split(n: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(0).permutation(n)  # fixed: the held-out rows never change
    n_test = max(1, n // 5)
    return perm[n_test:], perm[:n_test]


def _density_picture(dist, x: np.ndarray) -> np.ndarray:
    """Log density over a grid around 2-D data, with the data on top."""
    from vaemix.pictures import figure_array, plt

    lo, hi = x.min(0) - 1, x.max(0) + 1
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 150), np.linspace(lo[1], hi[1], 150))
    grid = np.stack([g0.ravel(), g1.ravel()], 1)
    dens = dist.log_prob(grid).numpy().reshape(g0.shape)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.contourf(g0, g1, np.maximum(dens, dens.max() - 12), levels=30, cmap="viridis")
    ax.scatter(x[:, 0], x[:, 1], s=2, c="white", alpha=0.4)
    ax.set_title("fitted log density")
    return figure_array(fig)


def fit_task(cfg: Config, run_dir: str | Path) -> dict:
    """Fit ``cfg.task`` to the tabular ``cfg.data``; write ``metrics.json`` and TensorBoard summaries."""
    from vaemix.evaluation import clustering_metrics
    from vaemix.mixture import BayesianGaussianMixture, GaussianMixture, MixtureDensityNetwork
    from vaemix.pictures import save_png

    run_dir = Path(run_dir)
    task, seed = cfg.task, cfg.seed
    x, labels = load_table(cfg.data, seed)
    train, test = _split(len(x))
    metrics: dict = {"task": task.kind, "num_train": len(train), "num_test": len(test)}
    t0 = time.perf_counter()
    if task.kind == "mdn":
        targets = cfg.data.targets or [x.shape[1] - 1]
        if max(targets) >= x.shape[1] or x.shape[1] - len(targets) < 1:
            raise UserError(f"data.targets={targets} must leave at least one input column of {x.shape[1]}")
        inputs = np.setdiff1d(np.arange(x.shape[1]), targets)
        mdn = MixtureDensityNetwork(len(inputs), len(targets), task.components, task.hidden, seed)
        losses = mdn.fit(x[train][:, inputs], x[train][:, targets], epochs=task.epochs)
        metrics |= {"train_nll": losses[-1], "test_nll": mdn.nll(x[test][:, inputs], x[test][:, targets])}
        dist = None
    else:
        if task.kind == "gmm":
            model = GaussianMixture(task.components, task.covariance, task.n_init, seed=seed).fit(x[train])
            metrics |= {"bic": model.bic(x[train]), "n_iter": model.n_iter_, "converged": bool(model.converged_)}
        else:
            method = task.kind.removeprefix("bgmm_")
            options = {"epochs": task.epochs} if method == "svi" else {
                "num_results": task.num_results, "num_burnin": task.num_burnin, "chains": task.chains}  # fmt: skip
            model = BayesianGaussianMixture(task.components, seed=seed).fit(x[train], method, **options)
            metrics |= model.posterior.diagnostics
        dist = model.distribution
        metrics |= {
            "train_log_likelihood": float(dist.log_prob(x[train]).numpy().mean()),
            "test_log_likelihood": float(dist.log_prob(x[test]).numpy().mean()),
        }
        if labels is not None:
            comps = dist.components_distribution.log_prob(x[test][:, None]).numpy() + np.log(
                dist.mixture_distribution.probs_parameter().numpy())  # fmt: skip
            metrics |= clustering_metrics(labels[test], np.argmax(comps, 1), task.components)
    metrics["fit_seconds"] = time.perf_counter() - t0
    summaries = Summaries(run_dir / "tensorboard")
    summaries.scalars(0, {f"eval/{k}": float(v) for k, v in metrics.items() if isinstance(v, int | float)})
    if dist is not None and x.shape[1] == 2:
        picture = _density_picture(dist, x)
        save_png(run_dir / "density.png", picture)
        summaries.images(0, {"density": picture}, "eval")
    summaries.flush()
    write_json(run_dir / "metrics.json", metrics)
    log.info("%s: %s", task.kind, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
    return metrics
