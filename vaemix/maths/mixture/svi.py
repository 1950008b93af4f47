"""A diagonal-covariance Bayesian Gaussian mixture fitted by stochastic variational inference.

Variational posteriors: Dirichlet (weights), Normal (means) and Gamma (per-dimension precisions); the
minibatch loss is KL(q || prior) / N - mean log-likelihood, with the parameters' samples reparameterised.
Works on standardised data (see :class:`~vaemix.maths.mixture.bayesian.BayesianGaussianMixture`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from vaemix.maths.keras import keras, tfd  # tf_keras (Keras 2)
from vaemix.maths.mixture.gmm import GaussianMixture


class _DiagonalPosterior(tf.Module):
    """q(w) q(mu) q(precision), started at a diagonal EM fit of ``z``."""

    def __init__(self, z: np.ndarray, components: int, seed: int):
        super().__init__()
        n, d = z.shape
        init = GaussianMixture(components, covariance="diag", n_init=1, seed=seed).fit(z)
        f32 = lambda a: tf.constant(a, tf.float32)  # noqa: E731
        self.loc = tf.Variable(f32(init.means_))  # q(mu) = Normal(loc, softplus(raw_scale))
        self.raw_scale = tf.Variable(tf.fill([components, d], -3.0))
        self.log_alpha = tf.Variable(tf.fill([components, d], np.log(5.0).astype(np.float32)))  # q(prec) = Gamma
        self.log_beta = tf.Variable(f32(np.log(5.0 * np.stack([np.diag(c) for c in init.covariances_]))))
        self.log_conc = tf.Variable(f32(np.log(init.weights_ * n / 10 + 1.0)))  # q(w) = Dirichlet

    def __call__(self) -> tuple[tfd.Normal, tfd.Gamma, tfd.Dirichlet]:
        return (
            tfd.Normal(self.loc, tf.nn.softplus(self.raw_scale)),
            tfd.Gamma(tf.exp(self.log_alpha), tf.exp(self.log_beta)),
            tfd.Dirichlet(tf.exp(self.log_conc)),
        )


def fit_svi(
    z: np.ndarray,
    components: int,
    concentration: float,
    mean_scale: float,
    seed: int,
    epochs: int = 200,
    batch_size: int = 500,
    lr: float = 0.03,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Posterior mean weights ``[K]``, means ``[K, D]``, covariances ``[K, D, D]`` and the final loss."""
    n, d = z.shape
    k = components
    q = _DiagonalPosterior(z, k, seed)
    prior_mu = tfd.Normal(tf.zeros([k, d]), mean_scale)
    # On the standardised scale a cluster's precision is usually well above 1: a broad prior, mean 4.
    prior_prec = tfd.Gamma(tf.fill([k, d], 2.0), 0.5)
    prior_w = tfd.Dirichlet(tf.fill([k], float(concentration)))
    opt = keras.optimizers.Adam(lr)

    @tf.function
    def step(xb: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            q_mu, q_prec, q_w = q()
            mu = q_mu.sample(seed=seed)  # [K, D]
            sigma = tf.math.rsqrt(q_prec.sample(seed=seed + 1))
            w = q_w.sample(seed=seed + 2)
            mix = tfd.MixtureSameFamily(tfd.Categorical(probs=w), tfd.MultivariateNormalDiag(mu, sigma))
            kl = (
                tf.reduce_sum(tfd.kl_divergence(q_mu, prior_mu))
                + tf.reduce_sum(tfd.kl_divergence(q_prec, prior_prec))
                + tfd.kl_divergence(q_w, prior_w)
            )
            loss = kl / n - tf.reduce_mean(mix.log_prob(xb))
        opt.apply_gradients(zip(tape.gradient(loss, q.trainable_variables), q.trainable_variables, strict=True))
        return loss

    rng = np.random.default_rng(seed)
    data = z.astype(np.float32)
    for epoch in range(epochs):
        order = rng.permutation(n)
        for i in range(0, n, batch_size):
            loss = step(tf.constant(data[order[i : i + batch_size]]), tf.constant([seed, epoch * n + i]))
    q_mu, q_prec, q_w = q()
    covs = np.stack([np.diag(1.0 / v) for v in q_prec.mean().numpy()])
    return q_w.mean().numpy(), q_mu.mean().numpy(), covs, {"final_loss": float(loss)}
