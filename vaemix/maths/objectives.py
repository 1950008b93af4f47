"""The evidence lower bound, written once for training and evaluation.

``elbo`` returns per-example ``distortion`` (-E_q log p(x|z)) and ``rate`` (the Monte Carlo estimate of
KL(q(z|x) || p(z)) = E_q[log q(z|x) - log p(z)]) plus the importance log-weights, from which the
importance-weighted bound is one logsumexp away.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from vaemix.maths.keras import tfd
from vaemix.maths.vae import VAE


class ElboTerms(NamedTuple):
    distortion: tf.Tensor  # [B]  -mean_s log p(x|z_s)
    rate: tf.Tensor  # [B]  mean_s [log q(z_s|x) - log p(z_s)]
    log_weights: tf.Tensor  # [S, B]  log p(x|z_s) + log p(z_s) - log q(z_s|x)
    latent_mean: tf.Tensor  # [B, D]  mean of q(z|inputs)

    @property
    def elbo(self) -> tf.Tensor:
        """``[B]`` per-example ELBO in nats."""
        return -(self.distortion + self.rate)


def reparameterize(loc: tf.Tensor, scale_tril: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
    """``z = loc + L eps``: ``loc [B, D]``, ``L = scale_tril [B, D, D]`` and ``noise [S, B, D] -> z [S, B, D]``,
    differentiable in q's parameters.

    The noise comes from the caller so that its seed, not the replica layout, decides the sample.
    """
    return loc + tf.einsum("bij,sbj->sbi", scale_tril, noise)


def log_q_of_sample(scale_tril: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
    """``log q(z|x) [S, B]`` at ``z = loc + L noise``, from ``noise [S, B, D]`` and ``L = scale_tril [B, D, D]``.

    Equals ``q.log_prob(z)`` as a function of q's parameters (same value, same gradients), without solving
    ``L u = z - loc``: when L is ill-conditioned that solve loses every digit (in float64 too).
    """
    log_det = tf.reduce_sum(tf.math.log(tf.abs(tf.linalg.diag_part(scale_tril))), axis=-1)  # [B]
    return tf.reduce_sum(tfd.Normal(0.0, 1.0).log_prob(noise), axis=-1) - log_det  # [S, B]


def latent_terms(vae: VAE, loc: tf.Tensor, scale_tril: tf.Tensor, noise: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """``z [S, B, D]``, ``log q(z|x) [S, B]`` and ``log p(z) [S, B]`` for q(z|x) = N(loc ``[B, D]``,
    scale_tril ``[B, D, D]`` times its transpose) and ``noise [S, B, D]``."""
    z = reparameterize(loc, scale_tril, noise)
    return z, log_q_of_sample(scale_tril, noise), vae.prior().log_prob(z)


# Dozens of small ops (triangular solves against K components, logsumexp) and their gradients, which
# XLA fuses; for networks that XLA slows down (convolutions on a CPU) this is all that is compiled.
_latent_terms_xla = tf.function(latent_terms, jit_compile=True)


def elbo(vae: VAE, x: tf.Tensor, noise: tf.Tensor, inputs: tf.Tensor | None = None, xla: bool = False) -> ElboTerms:
    """ELBO terms of images ``x [B, H, W, C]`` with ``S`` latent samples from ``noise [S, B, D]``.

    The encoder sees ``inputs`` (default ``x``; an augmented view of ``x`` while training), the decoder
    explains ``x``. ``xla`` compiles the latent maths (:func:`latent_terms`) with XLA.
    """
    q = vae.encoder(x if inputs is None else inputs)  # batch [B], event [D]
    terms = _latent_terms_xla if xla else latent_terms
    z, log_q, log_pz = terms(vae, q.loc, q.scale.to_dense(), noise)  # [S, B, D], [S, B], [S, B]
    s = tf.shape(z)[0]
    p = vae.decoder(tf.reshape(z, [-1, vae.latent_dim]))  # batch [S*B], event [H, W, C]
    x_rep = tf.reshape(tf.repeat(x[None], s, axis=0), tf.concat([[-1], tf.shape(x)[1:]], 0))  # [S*B, H, W, C]
    log_px = tf.reshape(p.log_prob(x_rep), tf.shape(log_q))  # [S, B]
    return ElboTerms(
        distortion=-tf.reduce_mean(log_px, axis=0),
        rate=tf.reduce_mean(log_q - log_pz, axis=0),
        log_weights=log_px + log_pz - log_q,
        latent_mean=q.loc,
    )


def autoencoder_terms(vae: VAE, x: tf.Tensor, inputs: tf.Tensor | None = None) -> ElboTerms:
    """Pretraining's terms: z = the encoder mean, ``rate`` 0. The encoder's scale is untrained then, so
    log q(z|x) is left out: it can overflow, and would mean nothing."""
    loc = vae.encoder(x if inputs is None else inputs).loc  # [B, D]
    log_px = vae.decoder(loc).log_prob(x)  # [B]
    return ElboTerms(distortion=-log_px, rate=tf.zeros_like(log_px), log_weights=log_px[None], latent_mean=loc)


def iwae_bound(log_weights: tf.Tensor) -> tf.Tensor:
    """``[S, B] -> [B]``: log (1/S) sum_s w_s, a lower bound on log p(x) that tightens with S."""
    s = tf.cast(tf.shape(log_weights)[0], log_weights.dtype)
    return tf.reduce_logsumexp(log_weights, axis=0) - tf.math.log(s)


def latent_noise(seed: int | tf.Tensor, counter: tf.Tensor, shape: tf.Tensor | list) -> tf.Tensor:
    """Standard normal ``noise`` of ``shape`` from the stateless seed ``(seed, counter)``."""
    return tf.random.stateless_normal(shape, seed=tf.stack([tf.cast(seed, tf.int64), tf.cast(counter, tf.int64)]))


def contrastive_loss(a: tf.Tensor, b: tf.Tensor, temperature: float) -> tf.Tensor:
    """Per-example InfoNCE between two views' latent means ``a, b [B, D] -> [B]``.

    Each example's other view must be the nearest of the batch under ``-|a_i - b_j|^2 / temperature``:
    squared Euclidean distance, so the clusters it forms are the ones a Gaussian mixture in z sees.
    Symmetric in the two views.
    """
    sq = (
        tf.reduce_sum(a**2, -1)[:, None] + tf.reduce_sum(b**2, -1)[None, :] - 2.0 * tf.matmul(a, b, transpose_b=True)
    )  # [B, B]
    logits = -sq / temperature
    labels = tf.range(tf.shape(a)[0])
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits
    return 0.5 * (ce(labels, logits) + ce(labels, tf.transpose(logits)))
