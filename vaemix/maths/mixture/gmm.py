"""Maximum-likelihood Gaussian mixtures by EM, with k-means++ seeding and several restarts.

The fitted mixture is a TFP ``MixtureSameFamily(Categorical, MultivariateNormalTriL)`` built by the same
:func:`vaemix.priors.gaussian_mixture` as the VAE's prior; EM itself runs in float64 NumPy.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from scipy.special import logsumexp

from vaemix.errors import VaemixError
from vaemix.maths.keras import tfd
from vaemix.maths.mixture.checks import check_data
from vaemix.maths.mixture.kmeans import kmeans_plus_plus
from vaemix.maths.priors import component_log_posterior, gaussian_mixture


def _component_log_prob(x: np.ndarray, means: np.ndarray, covs: np.ndarray) -> np.ndarray:
    """``log N(x_n; mu_k, S_k)`` as ``[N, K]``."""
    n, d = x.shape
    out = np.empty((n, len(means)))
    for k, (mu, cov) in enumerate(zip(means, covs, strict=True)):
        chol = np.linalg.cholesky(cov)
        sol = np.linalg.solve(chol, (x - mu).T)  # [D, N]
        out[:, k] = -0.5 * np.sum(sol**2, 0) - np.sum(np.log(np.diag(chol))) - 0.5 * d * np.log(2 * np.pi)
    return out


def mixture_moments(
    x: np.ndarray, resp: np.ndarray, covariance: str = "full", reg_covar: float = 1e-6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights ``[K]``, means ``[K, D]`` and covariances ``[K, D, D]`` (+ ``reg_covar`` I) of ``x [N, D]``
    under responsibilities ``resp [N, K]``: EM's M-step, or k-means clusters with one-hot ``resp``."""
    nk = resp.sum(0) + 1e-10  # [K]
    means = resp.T @ x / nk[:, None]  # [K, D]
    covs = []
    for k in range(resp.shape[1]):
        diff = x - means[k]
        if covariance == "full":
            cov = (resp[:, k, None] * diff).T @ diff / nk[k]
        else:
            cov = np.diag(resp[:, k] @ diff**2 / nk[k])
        covs.append(cov + reg_covar * np.eye(x.shape[1]))
    return nk / len(x), means, np.stack(covs)


class GaussianMixture:
    """A K-component Gaussian mixture over ``[D]`` fitted by maximum likelihood (EM).

    ``covariance="full"`` learns full covariances, ``"diag"`` diagonal ones. ``fit`` runs ``n_init``
    restarts from k-means++ seeds and keeps the one with the highest likelihood.
    """

    def __init__(
        self,
        components: int,
        covariance: str = "full",
        n_init: int = 3,
        max_iter: int = 300,
        tol: float = 1e-6,
        reg_covar: float = 1e-6,
        seed: int = 0,
    ):
        if components < 1:
            raise VaemixError(f"components={components} is out of range; it must be >= 1")
        if covariance not in ("full", "diag"):
            raise VaemixError(f"covariance={covariance!r} is not allowed; choose one of: full, diag")
        self.components, self.covariance, self.n_init = components, covariance, n_init
        self.max_iter, self.tol, self.reg_covar, self.seed = max_iter, tol, reg_covar, seed
        self.weights_: np.ndarray | None = None

    # -- fitting ---------------------------------------------------------------------------------

    def _m_step(self, x: np.ndarray, resp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return mixture_moments(x, resp, self.covariance, self.reg_covar)

    def _em(self, x: np.ndarray, rng: np.random.Generator) -> tuple[float, tuple, int, bool]:
        centres = kmeans_plus_plus(x, self.components, rng)
        labels = np.argmin(((x[:, None] - centres[None]) ** 2).sum(-1), axis=1)
        params = self._m_step(x, np.eye(self.components)[labels])
        previous = -np.inf
        for it in range(1, self.max_iter + 1):
            log_joint = np.log(params[0]) + _component_log_prob(x, params[1], params[2])  # [N, K]
            log_norm = logsumexp(log_joint, axis=1)
            ll = float(log_norm.mean())
            params = self._m_step(x, np.exp(log_joint - log_norm[:, None]))
            if abs(ll - previous) < self.tol:
                return ll, params, it, True
            previous = ll
        return ll, params, self.max_iter, False

    def fit(self, x) -> GaussianMixture:
        """Fit to ``x [N, D]``; returns ``self`` with ``weights_``, ``means_``, ``covariances_``."""
        x = check_data(x, self.components)
        rng = np.random.default_rng(self.seed)
        best = max((self._em(x, rng) for _ in range(self.n_init)), key=lambda r: r[0])
        self.mean_log_likelihood_, (self.weights_, self.means_, self.covariances_), self.n_iter_, self.converged_ = best
        return self

    # -- using the fit ---------------------------------------------------------------------------

    @property
    def distribution(self) -> tfd.MixtureSameFamily:
        """The fitted mixture as a TFP distribution (float64)."""
        if self.weights_ is None:
            raise VaemixError("this GaussianMixture is not fitted yet; call fit(x) first")
        return gaussian_mixture(np.log(self.weights_), self.means_, np.linalg.cholesky(self.covariances_))

    def log_prob(self, x) -> np.ndarray:
        """``log p(x_n)`` for each row: ``[N, D] -> [N]``."""
        x = check_data(x)
        return self.distribution.log_prob(x).numpy()

    def predict_proba(self, x) -> np.ndarray:
        """Responsibilities ``p(k | x_n)``: ``[N, D] -> [N, K]``."""
        x = check_data(x)
        return np.exp(component_log_posterior(self.distribution, tf.constant(x)).numpy())

    def predict(self, x) -> np.ndarray:
        """The most likely component of each row: ``[N, D] -> [N]``."""
        return np.argmax(self.predict_proba(x), axis=1)

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` draws ``[n, D]``."""
        return self.distribution.sample(n, seed=tf.constant([seed, 0])).numpy()

    def num_parameters(self) -> int:
        k, d = self.means_.shape
        cov = k * d * (d + 1) // 2 if self.covariance == "full" else k * d
        return cov + k * d + k - 1

    def bic(self, x) -> float:
        """Bayesian information criterion on ``x`` (lower is better)."""
        x = check_data(x)
        return float(-2 * self.log_prob(x).sum() + self.num_parameters() * np.log(len(x)))
