"""``python train.py task=gmm|bgmm_svi|bgmm_hmc|mdn data=blobs|table``: the mixture toolkit on tabular data,
with the same run dir, TensorBoard scalars and ``metrics.json`` as the VAE."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from vaemix.errors import VaemixError
from vaemix.infra.arrays import held_out_split
from vaemix.infra.atomic import write_json
from vaemix.infra.config import Config, TaskConfig
from vaemix.infra.pictures import density_picture, save_png
from vaemix.infra.summaries import Summaries
from vaemix.infra.tables import load_table
from vaemix.maths.keras import tfd
from vaemix.maths.metrics import clustering_metrics
from vaemix.maths.mixture import BayesianGaussianMixture, GaussianMixture, MixtureDensityNetwork
from vaemix.maths.priors import most_probable_component

log = logging.getLogger("vaemix")


def _fit_mdn(task: TaskConfig, x: np.ndarray, targets: list[int], train, test, seed: int) -> dict:
    if max(targets) >= x.shape[1] or x.shape[1] - len(targets) < 1:
        raise VaemixError(f"data.targets={targets} must leave at least one input column of {x.shape[1]}")
    inputs = np.setdiff1d(np.arange(x.shape[1]), targets)
    mdn = MixtureDensityNetwork(len(inputs), len(targets), task.components, task.hidden, seed)
    losses = mdn.fit(x[train][:, inputs], x[train][:, targets], epochs=task.epochs)
    return {"train_nll": losses[-1], "test_nll": mdn.nll(x[test][:, inputs], x[test][:, targets])}


def _fit_mixture(task: TaskConfig, x: np.ndarray, seed: int) -> tuple[tfd.MixtureSameFamily, dict]:
    """The fitted mixture's distribution and its fit's own diagnostics."""
    if task.kind == "gmm":
        model = GaussianMixture(task.components, task.covariance, task.n_init, seed=seed).fit(x)
        return model.distribution, {"bic": model.bic(x), "n_iter": model.n_iter_, "converged": bool(model.converged_)}
    method = task.kind.removeprefix("bgmm_")
    options = (
        {"epochs": task.epochs}
        if method == "svi"
        else {"num_results": task.num_results, "num_burnin": task.num_burnin, "chains": task.chains}
    )
    model = BayesianGaussianMixture(task.components, seed=seed).fit(x, method, **options)
    return model.distribution, dict(model.posterior.diagnostics)


def fit_task(cfg: Config, run_dir: str | Path) -> dict:
    """Fit ``cfg.task`` to the tabular ``cfg.data``; write ``metrics.json`` and TensorBoard summaries."""
    run_dir, task, seed = Path(run_dir), cfg.task, cfg.seed
    x, labels = load_table(cfg.data, seed)
    train, test = held_out_split(len(x), cfg.data.test_fraction)
    metrics: dict = {"task": task.kind, "num_train": len(train), "num_test": len(test)}
    t0 = time.perf_counter()
    dist = None
    if task.kind == "mdn":
        metrics |= _fit_mdn(task, x, cfg.data.targets or [x.shape[1] - 1], train, test, seed)
    else:
        dist, diagnostics = _fit_mixture(task, x[train], seed)
        metrics |= diagnostics
        metrics |= {
            "train_log_likelihood": float(dist.log_prob(x[train]).numpy().mean()),
            "test_log_likelihood": float(dist.log_prob(x[test]).numpy().mean()),
        }
        if labels is not None:
            metrics |= clustering_metrics(labels[test], most_probable_component(dist, x[test]), task.components)
    metrics["fit_seconds"] = time.perf_counter() - t0
    summaries = Summaries(run_dir / "tensorboard")
    summaries.scalars(0, {f"eval/{k}": float(v) for k, v in metrics.items() if isinstance(v, int | float)})
    if dist is not None and x.shape[1] == 2:
        picture = density_picture(dist, x)
        save_png(run_dir / "density.png", picture)
        summaries.images(0, {"density": picture}, "eval")
    summaries.flush()
    write_json(run_dir / "metrics.json", metrics)
    log.info("%s: %s", task.kind, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
    return metrics
