"""Initialising the mixture prior from latent vectors: the consensus of several mixture fits.

Of several fits from different seeds it keeps the one whose clusters agree most with the others' (mean
adjusted Rand index, :func:`~vaemix.maths.metrics.most_agreed`), not the most likely: on pretrained
latents the fits' likelihoods nearly tie while their clusters do not, and the ELBO phase keeps the
clusters the prior starts from (the benchmarks' README has the numbers).
"""

from __future__ import annotations

import numpy as np

from vaemix.maths.metrics import most_agreed
from vaemix.maths.mixture.gmm import GaussianMixture, mixture_moments
from vaemix.maths.mixture.kmeans import kmeans
from vaemix.maths.numerics import COVARIANCE_FLOOR
from vaemix.maths.priors import MixturePrior
from vaemix.maths.streams import restart_seeds

# COVARIANCE_FLOOR is added to fitted covariances: latent means on a sphere have ~0 radial variance, and
# a component that thin makes log p(z) of the noisy samples explode in the first ELBO steps.


def _gmm_fits(z: np.ndarray, k: int, covariance: str, seeds: list[int]) -> list[tuple[np.ndarray, ...]]:
    """``(labels, weights, means, covariances)`` of one EM fit (a k-means++ start) per seed."""
    fits = []
    for s in seeds:
        gmm = GaussianMixture(k, covariance, n_init=1, reg_covar=COVARIANCE_FLOOR, seed=s).fit(z)
        fits.append((gmm.predict(z), gmm.weights_, gmm.means_, gmm.covariances_))  # [K, D, D] for both
    return fits


def _kmeans_fits(z: np.ndarray, k: int, covariance: str, seeds: list[int]) -> list[tuple[np.ndarray, ...]]:
    """``(labels, weights, means, covariances)`` of the k-means clusters of one run per seed."""
    fits = []
    for s in seeds:
        labels = kmeans(z, k, seed=s, n_init=1)
        weights, means, cov = mixture_moments(z, np.eye(k)[labels], covariance, COVARIANCE_FLOOR)
        weights = np.maximum(weights, 1e-3)  # an empty cluster keeps a small weight
        fits.append((labels, weights / weights.sum(), means, cov))
    return fits


def fit_prior(prior: MixturePrior, z: np.ndarray, method: str, seed: int, restarts: int = 20) -> float:
    """Set the mixture to the consensus of ``restarts`` GMM (``method="gmm"``) or k-means fits to latent
    vectors ``z [N, D]``; return its mean adjusted Rand index to the other fits."""
    fit = _gmm_fits if method == "gmm" else _kmeans_fits
    fits = fit(z, prior.components, prior.covariance, restart_seeds(seed, restarts))
    best, agreement = most_agreed([labels for labels, *_ in fits])
    _, weights, means, cov = fits[best]
    prior.assign(weights, means, cov)
    return agreement
