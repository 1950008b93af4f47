"""A full-covariance Bayesian Gaussian mixture by stochastic variational inference with natural gradients.

Model (on standardised data, ``D`` dims): weights ~ Dirichlet(alpha0), precisions Lambda_k ~ Wishart(W0,
nu0), means mu_k | Lambda_k ~ N(m0, (beta0 Lambda_k)^-1). Variational family: q(weights) Dirichlet(alpha),
q(mu_k, Lambda_k) Normal-Wishart(m_k, beta_k, W_k, nu_k), the conjugate one (Bishop, PRML 10.2).

In the coordinates ``(beta, beta m, W^-1 + beta m m^T, nu)`` the optimal q is linear in the data's
sufficient statistics, so a natural-gradient step on a minibatch is a convex combination of the current
coordinates and those the minibatch's statistics (scaled to N rows) would give (Hoffman et al., 2013). With
one batch of all the rows and a step of 1 it is exact coordinate ascent (CAVI). The E-step is one matrix
product against every component, as in :mod:`~vaemix.maths.mixture.gmm`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from scipy.special import digamma

from vaemix.maths.mixture.gmm import hard_statistics, sufficient_statistics
from vaemix.maths.mixture.kmeans import kmeans_plus_plus, lloyd


@dataclass
class NormalWishart:
    """Per component: ``beta [K]``, ``beta m [K, D]``, ``C = W^-1 + beta m m^T [K, D, D]``, ``nu [K]``, and
    the Dirichlet's ``alpha [K]``: the coordinates in which updates are convex combinations."""

    alpha: np.ndarray
    beta: np.ndarray
    beta_m: np.ndarray
    c: np.ndarray
    nu: np.ndarray

    def step(self, target: NormalWishart, rho: float) -> NormalWishart:
        mix = lambda a, b: (1 - rho) * a + rho * b  # noqa: E731
        return NormalWishart(*(mix(a, b) for a, b in zip(vars(self).values(), vars(target).values(), strict=True)))

    @property
    def means(self) -> np.ndarray:
        return self.beta_m / self.beta[:, None]

    @property
    def w_inverse(self) -> np.ndarray:
        m = self.means
        return self.c - self.beta[:, None, None] * m[:, :, None] * m[:, None, :]


@tf.function(reduce_retracing=True, autograph=False)
def _expected_statistics(x, log_weight, log_det, means, chol, correction):
    """One block: sum of log-normalisers and the sufficient statistics under responsibilities from the
    expected log-likelihood ``E[log pi_k] + E[log |Lambda_k|]/2 - D/(2 beta_k) - nu_k |L_k^T (x - m_k)|^2 / 2``
    (``chol`` holds ``L_k``, Cholesky factors of ``nu_k W_k``)."""
    k, d = tf.shape(means)[0], tf.shape(means)[1]
    flat = tf.reshape(tf.transpose(chol, [1, 0, 2]), [d, k * d])
    y = tf.reshape(tf.matmul(x, flat), [-1, k, d]) - tf.linalg.matvec(chol, means, transpose_a=True)  # [B, K, D]
    d_float = tf.cast(d, x.dtype)
    log_rho = (
        log_weight + 0.5 * log_det - correction - 0.5 * (d_float * math.log(2 * math.pi) + tf.reduce_sum(y**2, -1))
    )
    log_norm = tf.reduce_logsumexp(log_rho, 1)
    return (tf.reduce_sum(log_norm), *sufficient_statistics(x, tf.exp(log_rho - log_norm[:, None]), diag=False))


def _expectations(q: NormalWishart) -> list[tf.Tensor]:
    """What the E-step needs of q: E[log pi], E[log |Lambda|], means, Cholesky factors of E[Lambda] = nu W,
    and the D / (2 beta) term."""
    d = q.beta_m.shape[1]
    w = np.linalg.inv(q.w_inverse)
    sign, log_det_w = np.linalg.slogdet(w)
    e_log_det = digamma(0.5 * (q.nu[:, None] - np.arange(d)[None])).sum(1) + d * np.log(2) + log_det_w
    e_log_pi = digamma(q.alpha) - digamma(q.alpha.sum())
    chol = np.linalg.cholesky(q.nu[:, None, None] * w)  # E[Lambda] = L L^T: |L^T (x - m)|^2 is the quadratic
    return [tf.constant(a) for a in (e_log_pi, e_log_det, q.means, chol, 0.5 * d / q.beta)]


def _target(prior: NormalWishart, stats: list[tf.Tensor], scale: float) -> NormalWishart:
    """The coordinates q would have if the whole data had the statistics ``stats`` times ``scale``."""
    nk, sk, qk = (scale * s.numpy() for s in stats)
    return NormalWishart(prior.alpha + nk, prior.beta + nk, prior.beta_m + sk, prior.c + qk, prior.nu + nk)


def _prior(z: np.ndarray, k: int, concentration: float) -> NormalWishart:
    """Broad priors on standardised data: m0 = 0, beta0 = 1, nu0 = D, W0^-1 = the data's covariance."""
    d = z.shape[1]
    cov = np.atleast_2d(np.cov(z.T))
    return NormalWishart(
        np.full(k, concentration), np.ones(k), np.zeros((k, d)), np.tile(cov, (k, 1, 1)), np.full(k, float(d))
    )


def _kmeans_start(z: np.ndarray, k: int, restarts: int, rng: np.random.Generator, sample: int = 20_000):
    """The labels ``[N]`` of the best (by inertia) of ``restarts`` k-means runs on at most
    ``sample`` rows: variational inference keeps the mode it starts in."""
    rows = z if len(z) <= sample else z[rng.choice(len(z), sample, replace=False)]
    centres, _, _ = min((lloyd(rows, kmeans_plus_plus(rows, k, rng), 30) for _ in range(restarts)), key=lambda r: r[2])
    return np.concatenate(
        [np.argmin(((z[i : i + 65_536, None] - centres[None]) ** 2).sum(-1), 1) for i in range(0, len(z), 65_536)]
    )


def fit_full_svi(
    z: np.ndarray,
    components: int,
    concentration: float,
    seed: int,
    epochs: int = 100,
    batch_size: int | None = None,
    tol: float = 1e-4,
    forgetting: float = 0.7,
    start_restarts: int = 5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Posterior mean weights ``[K]``, means ``[K, D]``, expected covariances ``E[Lambda]^-1 [K, D, D]`` and
    diagnostics, from up to ``epochs`` passes over ``z`` until the mean expected log-likelihood changes by
    less than ``tol``: in minibatches of ``batch_size`` rows with natural-gradient steps ``(t + 2)^-forgetting``,
    or (None) in full batches, which is CAVI. Started from the best of ``start_restarts`` k-means runs."""
    n = len(z)
    prior, rng = _prior(z, components, concentration), np.random.default_rng(seed)
    labels = _kmeans_start(z, components, start_restarts, rng)  # [N]
    stats = [tf.constant(a) for a in hard_statistics(z, labels, components, diag=False)]
    q, t, history, x = _target(prior, stats, 1.0), 0, [-np.inf], tf.constant(z)
    for _ in range(epochs):
        total = 0.0
        for rows in np.array_split(rng.permutation(n), max(1, -(-n // (batch_size or n)))):
            block = tf.gather(x, np.sort(rows))
            log_norm, *stats = _expected_statistics(block, *_expectations(q))
            rho = 1.0 if len(rows) == n else (t + 2.0) ** -forgetting
            q, t, total = q.step(_target(prior, stats, n / len(rows)), rho), t + 1, total + float(log_norm)
        history.append(total / n)
        if abs(history[-1] - history[-2]) < tol:
            break
    covs = q.w_inverse / q.nu[:, None, None]
    diagnostics = {"epochs": len(history) - 1, "expected_log_likelihood": history[-1], "alpha": q.alpha.tolist()}
    return q.alpha / q.alpha.sum(), q.means, covs, diagnostics
