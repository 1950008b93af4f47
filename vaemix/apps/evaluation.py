"""``evaluate.py``: score a checkpoint of a run on held-out data, write its metrics and pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaemix.apps.restore import restore_run
from vaemix.apps.scoring import elbo_evaluator, iwae_nll, model_report
from vaemix.apps.toolkit import fit_metrics, restore_fit
from vaemix.errors import VaemixError
from vaemix.infra.arrays import held_out_split
from vaemix.infra.atomic import write_json
from vaemix.infra.config import Config, DataConfig, EvalOptions
from vaemix.infra.images import load_images
from vaemix.infra.pictures import all_pictures, save_png
from vaemix.infra.rundir import load_run_config
from vaemix.infra.summaries import Summaries, write_projector
from vaemix.infra.tables import load_table
from vaemix.maths.likelihoods import is_normalised


def evaluate_run(run_dir: str | Path, checkpoint: str | None = None, data=None, options=None) -> dict:
    """Evaluate ``checkpoint`` (default: latest) of ``run_dir`` on the test split of ``data`` (default:
    the run's own data). Writes ``<run_dir>/eval/metrics.json``, PNGs and TensorBoard summaries."""
    options = options or EvalOptions()
    run_dir = Path(run_dir)
    run_cfg = load_run_config(run_dir)
    if run_cfg.task.kind != "vae":
        return _evaluate_fit(run_dir, run_cfg, data)
    data_cfg = data or run_cfg.data
    dataset = load_images(data_cfg, seed=run_cfg.seed)
    images, labels = dataset.test_images, dataset.test_labels
    if options.max_examples:
        images = images[: options.max_examples]
        labels = None if labels is None else labels[: options.max_examples]
    try:
        cfg, vae, path, step = restore_run(run_dir, dataset.image_shape, checkpoint)
    except VaemixError as e:
        raise VaemixError(
            f"{e} (evaluation data {data_cfg.name!r} has images of shape {dataset.image_shape})"
        ) from None

    metrics: dict = elbo_evaluator(vae, cfg.seed, cfg.trainer.eval_samples)(images)
    if options.iwae_samples:
        binary = bool(np.all((images == 0) | (images == 255)))
        name = "iwae_nll" if is_normalised(cfg.model.likelihood, binary) else "iwae_cross_entropy"
        metrics[name] = iwae_nll(vae, images, options.iwae_samples, cfg.seed)
    clustering, z, clusters = model_report(vae, images, labels)
    metrics |= clustering
    metrics |= {"num_examples": len(images), "checkpoint": Path(path).name, "step": step, "data": data_cfg.name}

    out = run_dir / "eval"
    out.mkdir(exist_ok=True)
    write_json(out / "metrics.json", metrics)
    summaries = Summaries(run_dir / "tensorboard")
    summaries.scalars(step, {f"eval/{k}": v for k, v in metrics.items() if isinstance(v, float | int)})
    if options.pictures:
        unit = images[:32].astype(np.float32) / 255.0
        pictures = all_pictures(vae, unit, z, clusters, labels, cfg.seed)
        for name, picture in pictures.items():
            save_png(out / f"{name}.png", picture)
        summaries.images(step, pictures, "eval")
        columns = {"component": clusters if clusters is not None else np.zeros(len(z), int)}
        if labels is not None:
            columns["label"] = labels
        write_projector(run_dir / "tensorboard" / "projector", z, columns)
    summaries.flush()
    return metrics


def _evaluate_fit(run_dir: Path, cfg: Config, data: DataConfig | None) -> dict:
    """A toolkit run's saved fit on the held-out rows of its data (or on every row of ``data``)."""
    model, record = restore_fit(run_dir, cfg)
    x, labels = load_table(data or cfg.data, cfg.seed)
    rows = np.arange(len(x)) if data else held_out_split(len(x), cfg.data.test_fraction)[1]
    metrics = {"task": cfg.task.kind, "num_examples": len(rows), "data": (data or cfg.data).name}
    metrics |= fit_metrics(model, record, x[rows], None if labels is None else labels[rows], cfg.task.components)
    write_json(run_dir / "eval" / "metrics.json", metrics)
    return metrics


NOTES = {
    "iwae_cross_entropy": "grey levels scored by a Bernoulli likelihood: a cross-entropy in nats, not a "
    "log-likelihood (train with data.binarize=static for one)",
}


def format_table(metrics: dict) -> str:
    """Metrics as an aligned two-column table, with a note under it for the numbers that need one."""
    width = max(len(k) for k in metrics)
    rows = [f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}" for k, v in metrics.items()]
    rule = "-" * max(len(r) for r in rows)
    notes = [f"{k}: {NOTES[k]}" for k in metrics if k in NOTES]
    return "\n".join([rule, *rows, rule, *notes])
