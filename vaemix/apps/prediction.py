"""``predict.py``: a trained run's clusters (and, on request, log-likelihoods) for new data.

Writes ``<run_dir>/predictions/<name>.csv`` (a row an example: index, cluster, its probability, the
score, the label when known) and ``.npz`` (the ``[N, K]`` probabilities and ``[N, D]`` latent means),
computed and written block by block, each file through a temporary file and a rename.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from vaemix.apps.restore import restore_run, run_record
from vaemix.apps.scoring import iwae_log_likelihoods
from vaemix.apps.toolkit import restore_fit
from vaemix.errors import VaemixError
from vaemix.infra.atomic import open_atomic
from vaemix.infra.config import Config, DataConfig, PredictOptions
from vaemix.infra.datasets import load_examples
from vaemix.infra.examples import Examples
from vaemix.infra.rundir import load_run_config
from vaemix.infra.tables import TableSpec, load_table
from vaemix.infra.validation import check_data
from vaemix.maths.likelihoods import score_name
from vaemix.maths.metrics import clustering_metrics
from vaemix.maths.mixture import MixtureDensityNetwork
from vaemix.maths.priors import MixturePrior, component_log_posterior
from vaemix.maths.vae import VAE

log = logging.getLogger("vaemix")


@dataclass
class Block:
    """Predictions for rows ``[start, start + len(probabilities))`` of the data."""

    start: int
    probabilities: np.ndarray  # [B, K]  p(k|x) (the VAE: at the encoder mean)
    latent: np.ndarray  # [B, D]  latent means (the VAE) or the rows themselves (a fitted mixture)
    score: np.ndarray | None  # [B]  log p(x) (or a score, see score_name), log p(y|x) for the MDN


def _vae_blocks(vae: VAE, examples: Examples, options: PredictOptions) -> Iterator[Block]:
    prior, size = vae.prior(), options.batch_size
    for i, x in enumerate(examples.batches(size)):
        mean = vae.encoder(tf.constant(x)).mean()  # [B, D]
        if isinstance(vae.prior, MixturePrior):
            probs = tf.exp(component_log_posterior(prior, mean)).numpy()
        else:  # N(0, I): one component
            probs = np.ones([len(x), 1], np.float32)
        score = None
        if options.iwae_samples:
            block = examples.subset(np.arange(i * size, i * size + len(x)))
            score = iwae_log_likelihoods(vae, block, options.iwae_samples, options.seed, first_row=i * size)
        yield Block(i * size, probs, mean.numpy(), score)


def _fit_blocks(model, record: dict, rows: np.ndarray, options: PredictOptions) -> Iterator[Block]:
    for start in range(0, len(rows), options.batch_size):
        x = rows[start : start + options.batch_size]
        if isinstance(model, MixtureDensityNetwork):
            dist = model.predict(x[:, record["inputs"]])  # p(y|x): batch [B]
            probs = dist.mixture_distribution.probs_parameter().numpy()
            yield Block(start, probs, x, dist.log_prob(x[:, record["targets"]].astype(np.float32)).numpy())
        else:
            dist = model()
            probs = tf.exp(component_log_posterior(dist, tf.constant(x))).numpy()
            yield Block(start, probs, x, dist.log_prob(x).numpy())


def _write(blocks: Iterator[Block], labels: np.ndarray | None, out: Path, score: str | None, n: int) -> dict:
    """``out``.csv and ``out``.npz from ``blocks``; returns the arrays of the .npz."""
    parts: dict[str, list] = {"probabilities": [], "latent_mean": [], "score": []}
    header = ["index", "cluster", "probability"] + ([score] if score else []) + ([] if labels is None else ["label"])
    bar = tqdm(total=n, unit="example", desc="predict", disable=not sys.stderr.isatty())
    with open_atomic(out.with_suffix(".csv")) as f:
        f.write(",".join(header) + "\n")
        for b in blocks:
            for i, p in enumerate(b.probabilities):
                row = [str(b.start + i), str(int(np.argmax(p))), f"{p.max():.6g}"]
                row += [f"{b.score[i]:.6f}"] if score else []
                row += [] if labels is None else [str(labels[b.start + i])]
                f.write(",".join(row) + "\n")
            parts["probabilities"].append(b.probabilities)
            parts["latent_mean"].append(b.latent)
            parts["score"].append(b.score)
            bar.update(len(b.probabilities))
    bar.close()
    arrays = {k: np.concatenate(v) for k, v in parts.items() if k != "score"}
    arrays["cluster"] = np.argmax(arrays["probabilities"], axis=1)
    if score:
        arrays[score] = np.concatenate(parts["score"])
    with open_atomic(out.with_suffix(".npz"), "wb") as f:
        np.savez(f, **arrays)
    return arrays


def _output(run_dir: Path, data: DataConfig, split: str, out: str | None) -> Path:
    if out:
        return Path(out).expanduser()
    if data.name == "local" and data.images:
        name = Path(data.images).name.split(".")[0]
    elif data.name == "table" and data.path:
        name = Path(data.path).name.split(".")[0]
    else:
        name = data.name
    return run_dir / "predictions" / (name if split == "all" else f"{name}-{split}")


def _predict_vae(run_dir: Path, cfg: Config, data: DataConfig, checkpoint: str | None, options: PredictOptions):
    """``(blocks, labels, score name, N)`` for a VAE, on images or on a table's rows."""
    check_data(data)
    record = run_record(run_dir, cfg)
    examples = load_examples(data, options.split, record, cfg.seed)
    _, vae, path, step = restore_run(run_dir, tuple(record["shape"]), checkpoint)
    log.info("predicting with %s (step %d) on %d examples", Path(path).name, step, len(examples))
    score = score_name(cfg.model.likelihood, examples.binary()) if options.iwae_samples else None
    return _vae_blocks(vae, examples, options), examples.labels, score, len(examples)


def _predict_table(run_dir: Path, cfg: Config, data: DataConfig, options: PredictOptions):
    """``(blocks, labels, score name, N)`` for a fitted mixture or MDN (no split: every row)."""
    model, record = restore_fit(run_dir, cfg)
    rows, labels, _ = load_table(data, cfg.seed, TableSpec.from_record(record))
    if rows.shape[1] != record["dims"]:
        raise VaemixError(f"{data.path or data.name} has {rows.shape[1]} columns; this fit takes {record['dims']}")
    return _fit_blocks(model, record, rows, options), labels, "log_likelihood", len(rows)


def predict_run(
    run_dir: str | Path, checkpoint: str | None = None, data: DataConfig | None = None, options=None
) -> dict:
    """Predict with ``checkpoint`` (default: latest) of ``run_dir`` on ``data`` (default: the run's own);
    returns where it wrote and, when the data have labels, ACC / NMI / ARI of the clusters."""
    options, run_dir = options or PredictOptions(), Path(run_dir)
    cfg = load_run_config(run_dir)
    data = data or cfg.data
    out = _output(run_dir, data, options.split, options.out)
    if cfg.task.kind == "vae":
        blocks, labels, score, n = _predict_vae(run_dir, cfg, data, checkpoint, options)
    else:
        blocks, labels, score, n = _predict_table(run_dir, cfg, data, options)
    arrays = _write(blocks, labels, out, score, n)
    result = {"predictions": str(out.with_suffix(".csv")), "num_examples": n}
    if labels is not None and cfg.task.kind != "mdn":
        result |= clustering_metrics(labels, arrays["cluster"], arrays["probabilities"].shape[1])
    return result
