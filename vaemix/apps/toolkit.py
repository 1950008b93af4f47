"""``python train.py task=gmm|bgmm_svi|bgmm_hmc|mdn data=blobs|table``: the mixture toolkit on tabular data,
with the same run dir as the VAE: ``run_config.yaml``, ``data.json``, a checkpoint of the fit (so that
evaluation, prediction and export read it and never refit), TensorBoard scalars and ``metrics.json``."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from vaemix.errors import VaemixError
from vaemix.infra.arrays import held_out_split
from vaemix.infra.atomic import write_json
from vaemix.infra.checkpoints import Checkpoints
from vaemix.infra.config import Config, TaskConfig
from vaemix.infra.pictures import density_picture, save_png
from vaemix.infra.rundir import check_run_config, read_data_record, record_command, write_data_record
from vaemix.infra.summaries import Summaries
from vaemix.infra.tables import load_table
from vaemix.maths.metrics import clustering_metrics
from vaemix.maths.mixture import BayesianGaussianMixture, GaussianMixture, MixtureDensityNetwork
from vaemix.maths.mixture.fitted import FittedMixture
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


def _fit(task: TaskConfig, model, record: dict, x: np.ndarray, seed: int) -> dict:
    """Fit ``model`` to the training rows ``x``; return the fit's own diagnostics."""
    if isinstance(model, MixtureDensityNetwork):
        losses = model.fit(x[:, record["inputs"]], x[:, record["targets"]], epochs=task.epochs)
        return {"train_nll": losses[-1]}
    if task.kind == "gmm":
        gmm = GaussianMixture(task.components, task.covariance, task.n_init, seed=seed).fit(x)
        model.assign(gmm.distribution)
        return {"bic": gmm.bic(x), "n_iter": gmm.n_iter_, "converged": bool(gmm.converged_)}
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


SCALE_RATIO = 100.0  # features whose standard deviations differ more than this are not in comparable units


def _warn_scales(kind: str, x: np.ndarray, columns: list[str]) -> None:
    """One line when the training rows' features have standard deviations of very different sizes: the
    toolkit fits them in their own units, so the widest decides its initialisation and clusters (wine's
    run from 0.12 to 314; its test ACC is 0.64 as they are and 0.97-1.00 standardised, README)."""
    sd = x.std(axis=0)
    varying = np.flatnonzero(sd > 0)
    if len(varying) < 2:
        return
    low, high = varying[np.argmin(sd[varying])], varying[np.argmax(sd[varying])]
    if sd[high] > SCALE_RATIO * sd[low]:
        log.warning(
            "task=%s fits the features in their own units, and their standard deviations run from %.3g (%r) to "
            "%.3g (%r): the widest will decide the clusters; standardise the columns first unless their units "
            "are comparable",
            kind,
            sd[low],
            columns[low],
            sd[high],
            columns[high],
        )


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
        if spec is not None:
            _warn_scales(task.kind, x[train], spec.columns)
        metrics |= _fit(task, model, record, x[train], seed)
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
