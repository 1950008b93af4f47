"""Maximum-likelihood Gaussian mixtures by EM, with k-means++ seeding and several restarts.

The fitted mixture is a TFP ``MixtureSameFamily(Categorical, MultivariateNormalTriL)`` built by the same
:func:`vaemix.priors.gaussian_mixture` as the VAE's prior; EM itself runs in float64 NumPy.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from scipy.special import logsumexp

from vaemix.errors import UserError
from vaemix.keras import tfd
from vaemix.priors import gaussian_mixture


def check_data(x, components: int | None = None, name: str = "x") -> np.ndarray:
    """``[N, D]`` finite float64 data with at least ``components`` distinct rows, or a clear error."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise UserError(f"{name} must be a non-empty [N, D] array, got shape {x.shape}")
    bad = ~np.all(np.isfinite(x), axis=1)
    if bad.any():
        raise UserError(f"{name} has {int(bad.sum())} rows with NaN or inf (first: row {int(np.argmax(bad))})")
    if components is not None:
        distinct = len(np.unique(x, axis=0))
        if distinct < components:
            raise UserError(f"{name} has {distinct} distinct points for {components} components; use fewer components")
    return x


def kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` initial centres ``[k, D]``, each drawn with probability proportional to its squared distance
    from the centres already chosen."""
    centres = [x[rng.integers(len(x))]]
    d2 = np.sum((x - centres[0]) ** 2, axis=1)
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(x), 1 / len(x))
        centres.append(x[rng.choice(len(x), p=p)])
        d2 = np.minimum(d2, np.sum((x - centres[-1]) ** 2, axis=1))
    return np.stack(centres)


def kmeans(x: np.ndarray, k: int, seed: int = 0, n_init: int = 10, iters: int = 100) -> np.ndarray:
    """Lloyd's k-means from k-means++ seeds, best of ``n_init`` by inertia; returns labels ``[N]``."""
    x = check_data(x, k)
    rng = np.random.default_rng(seed)
    best, best_inertia = None, np.inf
    for _ in range(n_init):
        centres = kmeans_plus_plus(x, k, rng)
        for _ in range(iters):
            d2 = np.sum(x**2, 1)[:, None] - 2 * x @ centres.T + np.sum(centres**2, 1)[None]
            labels = np.argmin(d2, axis=1)
            new = np.stack([x[labels == j].mean(0) if np.any(labels == j) else centres[j] for j in range(k)])
            if np.allclose(new, centres):
                break
            centres = new
        inertia = float(np.sum(np.min(d2, axis=1)))
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return best


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
            raise UserError(f"components={components} is out of range; it must be >= 1")
        if covariance not in ("full", "diag"):
            raise UserError(f"covariance={covariance!r} is not allowed; choose one of: full, diag")
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
            raise UserError("this GaussianMixture is not fitted yet; call fit(x) first")
        return gaussian_mixture(np.log(self.weights_), self.means_, np.linalg.cholesky(self.covariances_))

    def log_prob(self, x) -> np.ndarray:
        """``log p(x_n)`` for each row: ``[N, D] -> [N]``."""
        x = check_data(x)
        return self.distribution.log_prob(x).numpy()

    def predict_proba(self, x) -> np.ndarray:
        """Responsibilities ``p(k | x_n)``: ``[N, D] -> [N, K]``."""
        x = check_data(x)
        log_joint = np.log(self.weights_) + _component_log_prob(x, self.means_, self.covariances_)
        return np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))

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
