"""``python train.py task=gmm|bgmm_svi|bgmm_hmc|mdn data=blobs|table``: the mixture toolkit on tabular data,
with the same run dir as the VAE: ``run_config.yaml``, ``data.json``, a checkpoint of the fit (so that
evaluation, prediction and export read it and never refit), TensorBoard scalars and ``metrics.json``."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from vaemix.errors import VaemixError
from vaemix.infra.arrays import held_out_split
from vaemix.infra.atomic import write_json
from vaemix.infra.checkpoints import Checkpoints
from vaemix.infra.config import Config, DataConfig, TaskConfig
from vaemix.infra.examples import Examples, Preprocessing
from vaemix.infra.pictures import density_picture, save_png
from vaemix.infra.rundir import check_run_config, read_data_record, record_command, write_data_record
from vaemix.infra.summaries import Summaries
from vaemix.infra.tables import fit_preprocessing, load_table
from vaemix.maths.metrics import clustering_metrics
from vaemix.maths.mixture import BayesianGaussianMixture, GaussianMixture, MixtureDensityNetwork
from vaemix.maths.mixture.conditional import rescaled
from vaemix.maths.mixture.fitted import FittedMixture
from vaemix.maths.mixture.gmm import REG_COVAR
from vaemix.maths.priors import most_probable_component

log = logging.getLogger("vaemix")


def _columns(task: TaskConfig, dims: int, targets: list[int]) -> dict:
    """What the fit takes: every column for a mixture; input and target columns for the MDN."""
    if task.kind != "mdn":
        return {"kind": "mixture", "dims": dims}
    targets = targets or [dims - 1]
    if max(targets) >= dims or dims - len(targets) < 1:
        raise VaemixError(f"data.targets={targets} must leave at least one input column of {dims}")
    return {"kind": "mdn", "dims": dims, "inputs": np.setdiff1d(np.arange(dims), targets).tolist(), "targets": targets}


def build_fit(task: TaskConfig, record: dict, seed: int) -> FittedMixture | MixtureDensityNetwork:
    """An empty model of the kind ``record`` says, ready to be fitted or restored."""
    if record["kind"] == "mdn":
        return MixtureDensityNetwork(len(record["inputs"]), len(record["targets"]), task.components, task.hidden, seed)
    return FittedMixture(task.components, record["dims"])


def fit_checkpoints(run_dir: Path, model: FittedMixture | MixtureDensityNetwork, writer: bool = True) -> Checkpoints:
    """The fit's checkpoint: the mixture's parameters, or the network's weights (not its optimizer's)."""
    tracked = list(model.model.variables) if isinstance(model, MixtureDensityNetwork) else model
    return Checkpoints(run_dir / "checkpoints", keep=1, writer=writer, model=tracked)


def _fit(task: TaskConfig, model, record: dict, x: np.ndarray, seed: int, scaling: tuple) -> dict:
    """Fit ``model`` to the training rows ``x``; return the fit's own diagnostics. EM fits
    ``(x - shift) / scale`` and saves the mixture in ``x``'s units; the Bayesian fits and the MDN standardise
    within."""
    if isinstance(model, MixtureDensityNetwork):
        losses = model.fit(x[:, record["inputs"]], x[:, record["targets"]], epochs=task.epochs)
        return {"train_nll": losses[-1]}
    if task.kind == "gmm":
        shift, scale = scaling
        z = (x - shift) / scale  # [N, D]
        # the floor in x's units: on standardised columns it would be scale**2 times less (a rare pixel's collapses)
        floor = REG_COVAR / scale**2  # [D]
        gmm = GaussianMixture(task.components, task.covariance, task.n_init, reg_covar=floor, seed=seed).fit(z)
        model.assign(rescaled(gmm.distribution, shift, scale))
        jacobian = len(x) * np.log(scale).sum()  # log p(x) = log p(z) - sum(log scale) a row
        return {"bic": gmm.bic(z) + 2 * jacobian, "n_iter": gmm.n_iter_, "converged": bool(gmm.converged_)}
    method = task.kind.removeprefix("bgmm_")
    options = (
        {"epochs": task.epochs}
        if method == "svi"
        else {"num_results": task.num_results, "num_burnin": task.num_burnin, "chains": task.chains}
    )
    bgmm = BayesianGaussianMixture(task.components, task.covariance, seed=seed).fit(x, method, **options)
    model.assign(bgmm.distribution)
    return dict(bgmm.posterior.diagnostics)


def fit_metrics(model, record: dict, x: np.ndarray, labels: np.ndarray | None, components: int) -> dict:
    """Held-out numbers of a fit on rows ``x``: mean log-likelihood (conditional for the MDN) and clusters."""
    if isinstance(model, MixtureDensityNetwork):
        return {"test_nll": model.nll(x[:, record["inputs"]], x[:, record["targets"]])}
    dist = model()
    metrics = {"test_log_likelihood": float(dist.log_prob(x).numpy().mean())}
    if labels is not None:
        metrics |= clustering_metrics(labels, most_probable_component(dist, x), components)
    return metrics


SPAN_RATIO = 10.0  # columns whose ranges differ more than this (a tenth of them against another) are in other units


def _units_differ(x: np.ndarray, columns: list[str]) -> str | None:
    """What says the training rows' columns are in different units, or None: a tenth of the varying columns
    span over ``SPAN_RATIO`` times less than another tenth (wine's training rows: 75-fold; iris 2.4,
    digits' pixels 4.0, MNIST's 1.4). Ranges and tenths, not the extreme standard deviations: a pixel that
    is rarely inked has a tiny one (digits' run over 200-fold) in the same units as the rest."""
    span = np.ptp(x, axis=0)  # [D]
    varying = np.flatnonzero(span > 0)
    if len(varying) < 2:
        return None
    low, high = np.percentile(span[varying], 10, method="lower"), np.percentile(span[varying], 90, method="higher")
    if high <= SPAN_RATIO * low:
        return None
    narrow, wide = varying[np.argmin(span[varying])], varying[np.argmax(span[varying])]
    return (
        f"the columns' ranges run from {span[narrow]:.3g} ({columns[narrow]!r}) to {span[wide]:.3g} "
        f"({columns[wide]!r}), a tenth of them under {low:.3g} and a tenth over {high:.3g}"
    )


def _scaling(task: TaskConfig, d: DataConfig, x: np.ndarray, columns: list[str]) -> tuple | None:
    """EM's ``(shift, scale)`` per column (None for the other tasks): the training rows' mean and standard
    deviation (a constant column's 1) when ``task.standardize`` is true, or null and the columns are in
    different units; else 0 and 1. One line says so when the units differ."""
    if task.kind != "gmm":
        return None  # the Bayesian fits and the MDN standardise within
    differ = _units_differ(x, columns)
    standardize = task.standardize or (task.standardize is None and differ is not None)
    if differ and not standardize:
        log.warning(
            "task=gmm fits the columns as they are, and %s: the widest will decide the fit; "
            "task.standardize=true fits them standardised unless their units are comparable",
            differ,
        )
    elif differ and task.standardize is None:
        log.info("task=gmm: %s, so EM fits them standardised and saves the mixture in their own units "
                 "(task.standardize=false: as they are)", differ)  # fmt: skip
    if not standardize:
        return np.zeros(x.shape[1]), np.ones(x.shape[1])
    pre = fit_preprocessing(Examples(x, Preprocessing("table")), replace(d, preprocessing="standardize"), columns)
    return pre.mean, pre.scale


def fit_task(cfg: Config, run_dir: str | Path, command: list[str] | None = None) -> dict:
    """Fit ``cfg.task`` to the tabular ``cfg.data`` (or reuse the run's saved fit); write ``metrics.json``.
    ``command`` (the entry script's ``sys.argv``) is recorded in the run dir's ``commands.log``."""
    run_dir, task, seed = Path(run_dir), cfg.task, cfg.seed
    check_run_config(run_dir, cfg)
    if command:
        record_command(run_dir, command)
    x, labels, spec = load_table(cfg.data, seed)
    train, test = held_out_split(len(x), cfg.data.test_fraction)
    record = _columns(task, x.shape[1], cfg.data.targets) | {"labels": labels is not None}
    record |= {} if spec is None else asdict(spec)  # so that new files are read as this one was
    model, t0 = build_fit(task, record, seed), time.perf_counter()
    ckpts = fit_checkpoints(run_dir, model)
    metrics: dict = {"task": task.kind, "num_train": len(train), "num_test": len(test)}
    if ckpts.restore():
        log.info("%s: reusing the fit saved in %s", task.kind, ckpts.latest)
    else:
        columns = [f"column {j}" for j in range(x.shape[1])] if spec is None else spec.columns
        metrics |= _fit(task, model, record, x[train], seed, _scaling(task, cfg.data, x[train], columns))
        write_data_record(run_dir, record)
        ckpts.save(1)
    metrics |= fit_metrics(model, record, x[test], None if labels is None else labels[test], task.components)
    metrics["fit_seconds"] = time.perf_counter() - t0
    _report(run_dir, model, x, metrics)
    log.info("%s: %s", task.kind, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
    return metrics


def _report(run_dir: Path, model, x: np.ndarray, metrics: dict) -> None:
    summaries = Summaries(run_dir / "tensorboard")
    summaries.scalars(0, {f"eval/{k}": float(v) for k, v in metrics.items() if isinstance(v, int | float)})
    if isinstance(model, FittedMixture) and x.shape[1] == 2:
        picture = density_picture(model(), x)
        save_png(run_dir / "density.png", picture)
        summaries.images(0, {"density": picture}, "eval")
    summaries.flush()
    write_json(run_dir / "metrics.json", metrics)


def restore_fit(run_dir: str | Path, cfg: Config) -> tuple[FittedMixture | MixtureDensityNetwork, dict]:
    """The run's saved fit and its data record."""
    record = read_data_record(run_dir)
    model = build_fit(cfg.task, record, cfg.seed)
    if fit_checkpoints(Path(run_dir), model, writer=False).restore() is None:
        raise VaemixError(f"{run_dir} has no saved fit; run its train.py command again")
    return model, record
