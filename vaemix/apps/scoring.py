"""What a trained model says about examples: held-out ELBO, the importance-weighted bound, latent means and
the model's own clusters. Training reports these every epoch; evaluation and prediction at the end."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from vaemix.infra.examples import Examples
from vaemix.maths.metrics import cluster_separation, clustering_metrics
from vaemix.maths.objectives import elbo, iwae_bound, latent_noise
from vaemix.maths.priors import MixturePrior, assignments
from vaemix.maths.streams import IWAE_OFFSET
from vaemix.maths.vae import VAE

EVAL_BATCH = 500


def elbo_evaluator(vae: VAE, seed: int, num_samples: int = 1) -> Callable[[Examples], dict[str, float]]:
    """``examples -> {elbo, reconstruction, kl}``, means in nats per example. The noise of batch ``i``
    comes from the stateless seed ``(seed, i)``, so the same weights always give the same numbers."""

    @tf.function(reduce_retracing=True)
    def batch_sums(x: tf.Tensor, i: tf.Tensor) -> tf.Tensor:
        noise = latent_noise(seed, i, [num_samples, tf.shape(x)[0], vae.latent_dim])
        t = elbo(vae, x, noise)
        return tf.stack([tf.reduce_sum(t.elbo), tf.reduce_sum(t.distortion), tf.reduce_sum(t.rate)])

    def evaluate(examples: Examples) -> dict[str, float]:
        sums = np.zeros(3)
        for i, x in enumerate(examples.batches(EVAL_BATCH)):
            sums += batch_sums(tf.constant(x), tf.constant(i, tf.int64)).numpy()
        elbo_mean, rec, kl = sums / len(examples)
        return {"elbo": elbo_mean, "reconstruction": rec, "kl": kl}

    return evaluate


def iwae_log_likelihoods(
    vae: VAE,
    examples: Examples,
    num_samples: int,
    seed: int = 0,
    first_row: int = 0,
    batch: int = 10,
    chunk: int = 500,
) -> np.ndarray:
    """Per-example importance-weighted estimates of ``log p(x)`` with ``num_samples`` samples from q(z|x),
    ``[N]`` (a log-likelihood only where :func:`~vaemix.maths.likelihoods.is_normalised` says so).

    Samples are drawn ``chunk`` at a time for ``batch`` examples, so memory stays at about
    ``batch * chunk`` decoder outputs whatever ``num_samples`` is. The noise of an example depends on its
    row in the whole data, ``first_row`` plus its row in ``examples`` (a multiple of ``batch``), so the
    estimates of a file computed block by block equal those of one call.
    """
    chunk = min(chunk, num_samples)
    if first_row % batch:
        raise ValueError(f"first_row={first_row} must be a multiple of batch={batch}")

    @tf.function(reduce_retracing=True)
    def log_weights(x: tf.Tensor, counter: tf.Tensor) -> tf.Tensor:
        noise = latent_noise(seed + IWAE_OFFSET, counter, [chunk, tf.shape(x)[0], vae.latent_dim])
        return elbo(vae, x, noise).log_weights  # [chunk, B]

    out, counter = [], first_row // batch * -(-num_samples // chunk)
    for x in examples.batches(batch):
        x = tf.constant(x)
        chunks = []
        for _ in range(-(-num_samples // chunk)):
            chunks.append(log_weights(x, tf.constant(counter, tf.int64)))
            counter += 1
        out.append(iwae_bound(tf.concat(chunks, axis=0)[:num_samples]).numpy())  # [S, B] -> [B]
    return np.concatenate(out).astype(np.float64)


def iwae_nll(vae: VAE, examples: Examples, num_samples: int, seed: int = 0) -> float:
    """Mean ``-log p(x)`` by :func:`iwae_log_likelihoods`."""
    return -float(np.mean(iwae_log_likelihoods(vae, examples, num_samples, seed)))


def latent_means(vae: VAE, examples: Examples) -> np.ndarray:
    """Encoder means ``[N, D]``."""
    return np.concatenate([vae.encoder(tf.constant(x)).mean().numpy() for x in examples.batches(EVAL_BATCH)])


def model_report(vae: VAE, examples: Examples) -> tuple[dict[str, float], np.ndarray, np.ndarray | None]:
    """Clustering metrics of the model's own assignments (against the examples' labels, when known), with
    the latent means and the clusters."""
    z = latent_means(vae, examples)
    if not isinstance(vae.prior, MixturePrior):
        return {}, z, None
    clusters, confidence = assignments(vae.prior(), z)
    label_free = {"separation": cluster_separation(z, clusters), "confidence": confidence}
    return clustering_metrics(examples.labels, clusters, vae.prior.components) | label_free, z, clusters
