"""Evaluating a trained model: held-out ELBO, importance-weighted log-likelihood, clustering quality,
and restoring a run directory's model from its own saved config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from vaemix.checkpoints import Checkpoints
from vaemix.config import Config, EvalOptions, validate
from vaemix.data import data_kwargs, eval_dataset, load
from vaemix.errors import UserError
from vaemix.models import VAE
from vaemix.objectives import elbo, iwae_bound, latent_noise
from vaemix.pictures import all_pictures, save_png
from vaemix.priors import MixturePrior, component_log_posterior
from vaemix.summaries import Summaries, write_json, write_projector

EVAL_BATCH = 500


def elbo_evaluator(vae: VAE, seed: int, num_samples: int = 1) -> Callable[[np.ndarray], dict[str, float]]:
    """``images -> {elbo, reconstruction, kl}``, means in nats per example. The noise of batch ``i``
    comes from the stateless seed ``(seed, i)``, so the same weights always give the same numbers."""

    @tf.function(reduce_retracing=True)
    def batch_sums(x: tf.Tensor, i: tf.Tensor) -> tf.Tensor:
        noise = latent_noise(seed, i, [num_samples, tf.shape(x)[0], vae.latent_dim])
        t = elbo(vae, x, noise)
        return tf.stack([tf.reduce_sum(t.elbo), tf.reduce_sum(t.distortion), tf.reduce_sum(t.rate)])

    def evaluate(images: np.ndarray) -> dict[str, float]:
        sums = np.zeros(3)
        for i, x in enumerate(eval_dataset(images, EVAL_BATCH)):
            sums += batch_sums(x, tf.constant(i, tf.int64)).numpy()
        elbo_mean, rec, kl = sums / len(images)
        return {"elbo": elbo_mean, "reconstruction": rec, "kl": kl}

    return evaluate


def iwae_nll(vae: VAE, images: np.ndarray, num_samples: int, seed: int = 0, batch: int = 10, chunk: int = 500) -> float:
    """Mean ``-log p(x)`` estimated with ``num_samples`` importance samples from q(z|x).

    Samples are drawn ``chunk`` at a time for ``batch`` examples, so memory stays at about
    ``batch * chunk`` decoder outputs whatever ``num_samples`` is.
    """
    chunk = min(chunk, num_samples)

    @tf.function(reduce_retracing=True)
    def log_weights(x: tf.Tensor, counter: tf.Tensor) -> tf.Tensor:
        noise = latent_noise(seed + 7919, counter, [chunk, tf.shape(x)[0], vae.latent_dim])
        return elbo(vae, x, noise).log_weights  # [chunk, B]

    total, counter = 0.0, 0
    for x in eval_dataset(images, batch):
        chunks = []
        for _ in range(-(-num_samples // chunk)):
            chunks.append(log_weights(x, tf.constant(counter, tf.int64)))
            counter += 1
        lw = tf.concat(chunks, axis=0)[:num_samples]  # [S, B]
        total += float(tf.reduce_sum(iwae_bound(lw)))
    return -total / len(images)


def latent_means(vae: VAE, images: np.ndarray) -> np.ndarray:
    """Encoder means ``[N, D]``."""
    return np.concatenate([vae.encoder(x).mean().numpy() for x in eval_dataset(images, EVAL_BATCH)])


def assign_components(prior: MixturePrior, z: np.ndarray) -> np.ndarray:
    """The model's own clusters: ``argmax_k p(k|z)`` under the prior, ``[N, D] -> [N]``."""
    return np.argmax(component_log_posterior(prior(), tf.constant(z, tf.float32)).numpy(), axis=-1)


def cluster_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Accuracy under the best one-to-one matching of clusters to labels (Hungarian algorithm)."""
    labels, clusters = np.asarray(labels), np.asarray(clusters)
    _, li = np.unique(labels, return_inverse=True)
    _, ci = np.unique(clusters, return_inverse=True)
    counts = np.zeros((ci.max() + 1, li.max() + 1), np.int64)  # [clusters, labels]
    np.add.at(counts, (ci, li), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(labels))


def most_agreed(labelings: list[np.ndarray]) -> tuple[int, float]:
    """The consensus of several clusterings of the same points: the index of the one with the highest
    mean adjusted Rand index to the others, and that mean (1.0 for a single clustering)."""
    n = len(labelings)
    if n == 1:
        return 0, 1.0
    agree = np.array([[adjusted_rand_score(a, b) if i != j else 0.0 for j, b in enumerate(labelings)]
                      for i, a in enumerate(labelings)])  # fmt: skip
    mean = agree.sum(axis=1) / (n - 1)
    return int(np.argmax(mean)), float(mean.max())


def clustering_metrics(labels: np.ndarray | None, clusters: np.ndarray, components: int) -> dict[str, float]:
    """ACC / NMI / ARI against ``labels`` (when known) and how the data spreads over components."""
    shares = np.bincount(clusters, minlength=components) / len(clusters)
    out = {"components_used": int(np.count_nonzero(shares)), "largest_share": float(shares.max())}
    if labels is not None:
        out |= {
            "cluster_acc": cluster_accuracy(labels, clusters),
            "nmi": float(normalized_mutual_info_score(labels, clusters)),
            "ari": float(adjusted_rand_score(labels, clusters)),
        }
    return out


# ----------------------------------------------------------------------------------------------
# Run directories


def _has_target(node) -> bool:
    if isinstance(node, dict):
        return "_target_" in node or any(_has_target(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_target(v) for v in node)
    return False


RUN_CONFIG = "run_config.yaml"  # the config of record, written by the run's first start


def load_run_config(run_dir: str | Path) -> Config:
    """The run's own config (``run_config.yaml``, else Hydra's ``.hydra/config.yaml``), read as data
    against vaemix's schema, never instantiated."""
    path = Path(run_dir) / RUN_CONFIG
    if not path.is_file():
        path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.is_file():
        raise UserError(f"{run_dir} is not a vaemix run dir (no {RUN_CONFIG} or .hydra/config.yaml)")
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path))
        if _has_target(raw):
            raise UserError(f"{path} names a _target_; vaemix run configs never do, refusing to use it")
        merged = OmegaConf.merge(OmegaConf.structured(Config), raw)
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise UserError(f"{path} is not a vaemix config: {str(e).splitlines()[0]}") from None
    return validate(cfg)  # type: ignore[arg-type]


def restore_run(
    run_dir: str | Path, image_shape: tuple[int, ...], checkpoint: str | None = None
) -> tuple[Config, VAE, str, int]:
    """Rebuild the run's model for ``image_shape`` and restore ``checkpoint`` (default: latest).

    Returns the run's config, the model, the checkpoint path and its training step.
    """
    from vaemix.training import build_state  # training imports this module

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    state = build_state(cfg, image_shape, steps_per_epoch=1)
    vae, optimizer = state.vae, state.optimizer
    ckpts = Checkpoints.for_model(run_dir / "checkpoints", vae, state.optimizers)
    path = ckpts.latest
    if checkpoint is not None:
        path = str(run_dir / "checkpoints" / checkpoint)
        if not Path(path + ".index").is_file():
            raise UserError(f"no checkpoint {checkpoint!r} in {run_dir / 'checkpoints'}")
    if path is None:
        raise UserError(f"{run_dir} has no checkpoint yet")
    ckpts.restore(path)
    return cfg, vae, path, int(optimizer.iterations.numpy())


# ----------------------------------------------------------------------------------------------
# The whole evaluation of a run


def model_report(
    vae: VAE, images: np.ndarray, labels: np.ndarray | None
) -> tuple[dict[str, float], np.ndarray, np.ndarray | None]:
    """Clustering metrics of the model's own assignments, with the latent means and the clusters."""
    z = latent_means(vae, images)
    if not isinstance(vae.prior, MixturePrior):
        return {}, z, None
    clusters = assign_components(vae.prior, z)
    return clustering_metrics(labels, clusters, vae.prior.components), z, clusters


def evaluate_run(run_dir: str | Path, checkpoint: str | None = None, data=None, options=None) -> dict:
    """Evaluate ``checkpoint`` (default: latest) of ``run_dir`` on the test split of ``data`` (default:
    the run's own data). Writes ``<run_dir>/eval/metrics.json``, PNGs and TensorBoard summaries."""
    options = options or EvalOptions()
    run_dir = Path(run_dir)
    run_cfg = load_run_config(run_dir)
    data_cfg = data or run_cfg.data
    dataset = load(data_cfg.name, seed=run_cfg.seed, **data_kwargs(data_cfg))
    images, labels = dataset.test_images, dataset.test_labels
    if options.max_examples:
        images = images[: options.max_examples]
        labels = None if labels is None else labels[: options.max_examples]
    try:
        cfg, vae, path, step = restore_run(run_dir, dataset.image_shape, checkpoint)
    except UserError as e:
        raise UserError(f"{e} (evaluation data {data_cfg.name!r} has images of shape {dataset.image_shape})") from None

    metrics: dict = elbo_evaluator(vae, cfg.seed, cfg.trainer.eval_samples)(images)
    if options.iwae_samples:
        metrics["iwae_nll"] = iwae_nll(vae, images, options.iwae_samples, cfg.seed)
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


def format_table(metrics: dict) -> str:
    """Metrics as an aligned two-column table."""
    width = max(len(k) for k in metrics)
    rows = [f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}" for k, v in metrics.items()]
    rule = "-" * max(len(r) for r in rows)
    return "\n".join([rule, *rows, rule])
