"""``evaluate.py``: score a checkpoint of a run on held-out data, write its metrics and pictures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from vaemix.apps.restore import restore_run, run_record
from vaemix.apps.scoring import elbo_evaluator, iwae_nll, model_report
from vaemix.apps.toolkit import fit_metrics, restore_fit
from vaemix.infra.arrays import held_out_split
from vaemix.infra.atomic import write_json
from vaemix.infra.config import Config, DataConfig, EvalOptions
from vaemix.infra.datasets import load_examples
from vaemix.infra.examples import Examples
from vaemix.infra.pictures import all_pictures, save_png
from vaemix.infra.rundir import load_run_config
from vaemix.infra.summaries import Summaries, write_projector
from vaemix.infra.tables import TableSpec, load_table
from vaemix.maths.likelihoods import bits_per_dim, is_normalised
from vaemix.maths.vae import VAE


def _likelihood_scores(vae: VAE, cfg: Config, examples: Examples, samples: int) -> dict[str, float]:
    """The IWAE estimate under the name it deserves (see ``is_normalised``); bits per dimension for the
    discretised logistic's 8-bit images."""
    nll = iwae_nll(vae, examples, samples, cfg.seed)
    if not is_normalised(cfg.model.likelihood, examples.binary()):
        return {"iwae_cross_entropy": nll}
    out = {"iwae_nll": nll}
    if cfg.model.likelihood == "logistic":
        out["bits_per_dim"] = bits_per_dim(nll, math.prod(examples.shape))
    return out


def _write_pictures(run_dir: Path, vae: VAE, cfg: Config, examples: Examples, report: tuple, step: int) -> None:
    z, clusters, features = report
    x = next(examples.first(32).batches(32))
    pictures = all_pictures(vae, x, z, clusters, examples.labels, cfg.seed, features)
    for name, picture in pictures.items():
        save_png(run_dir / "eval" / f"{name}.png", picture)
    summaries = Summaries(run_dir / "eval" / "tensorboard")
    summaries.images(step, pictures, "eval")
    summaries.flush()
    columns = {"component": clusters if clusters is not None else np.zeros(len(z), int)}
    if examples.labels is not None:
        columns["label"] = examples.labels
    write_projector(run_dir / "eval" / "projector", z, columns)


def evaluate_run(run_dir: str | Path, checkpoint: str | None = None, data=None, options=None) -> dict:
    """Evaluate ``checkpoint`` (default: latest) of ``run_dir`` on the test split of ``data`` (default:
    the run's own data). Writes only under ``<run_dir>/eval/``: ``metrics.json``, PNGs, TensorBoard summaries
    and the embedding projector's files, each file whole (a training may be running beside it)."""
    options, run_dir = options or EvalOptions(), Path(run_dir)
    run_cfg = load_run_config(run_dir)
    if run_cfg.task.kind != "vae":
        return _evaluate_fit(run_dir, run_cfg, data)
    record, data_cfg = run_record(run_dir, run_cfg), data or run_cfg.data
    examples = load_examples(data_cfg, "test", record, run_cfg.seed)
    if options.max_examples:
        examples = examples.first(options.max_examples)
    cfg, vae, path, step = restore_run(run_dir, tuple(record["shape"]), checkpoint)
    metrics: dict = elbo_evaluator(vae, cfg.seed, cfg.trainer.eval_samples)(examples)
    if options.iwae_samples:
        metrics |= _likelihood_scores(vae, cfg, examples, options.iwae_samples)
    clustering, z, clusters = model_report(vae, examples)
    metrics |= clustering | {
        "num_examples": len(examples),
        "checkpoint": Path(path).name,
        "step": step,
        "data": data_cfg.name,
    }
    write_json(run_dir / "eval" / "metrics.json", metrics)
    summaries = Summaries(run_dir / "eval" / "tensorboard")  # a reader writes only under eval/
    summaries.scalars(step, {f"eval/{k}": v for k, v in metrics.items() if isinstance(v, float | int)})
    summaries.flush()
    if options.pictures:
        _write_pictures(run_dir, vae, cfg, examples, (z, clusters, record.get("columns")), step)
    return metrics


def _evaluate_fit(run_dir: Path, cfg: Config, data: DataConfig | None) -> dict:
    """A toolkit run's saved fit on the held-out rows of its data (or on every row of ``data``)."""
    model, record = restore_fit(run_dir, cfg)
    x, labels, _ = load_table(data or cfg.data, cfg.seed, TableSpec.from_record(record))
    rows = np.arange(len(x)) if data else held_out_split(len(x), cfg.data.test_fraction)[1]
    metrics = {"task": cfg.task.kind, "num_examples": len(rows), "data": (data or cfg.data).name}
    metrics |= fit_metrics(model, record, x[rows], None if labels is None else labels[rows], cfg.task.components)
    write_json(run_dir / "eval" / "metrics.json", metrics)
    return metrics


NOTES = {
    "iwae_cross_entropy": "grey levels scored by a Bernoulli likelihood: a cross-entropy in nats, not a "
    "log-likelihood (train with data.binarize=static for one)",
    "separation": "label-free: the silhouette of the model's clusters of the latent means (-1 to 1, higher is "
    "better separated; nan when one cluster holds every example)",
    "confidence": "label-free: the mean of max_k p(k|z) (1/K to 1)",
    "smallest_share": "label-free: the share of the data in the smallest cluster (about 1/K for balanced classes; "
    "near 0 when a class is split across two clusters)",
}


def format_table(metrics: dict) -> str:
    """Metrics as an aligned two-column table, with a note under it for the numbers that need one."""
    width = max(len(k) for k in metrics)
    rows = [f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}" for k, v in metrics.items()]
    rule = "-" * max(len(r) for r in rows)
    notes = [f"{k}: {NOTES[k]}" for k in metrics if k in NOTES]
    return "\n".join([rule, *rows, rule, *notes])
