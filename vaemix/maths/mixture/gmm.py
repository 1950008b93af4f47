"""Maximum-likelihood Gaussian mixtures by EM in TensorFlow, on data in memory or streamed from disk.

All K components at once: one matrix product gives every row's K component log-densities through the
components' precision Cholesky factors, and each E-step accumulates the sufficient statistics (counts,
sums, and sums of outer products) over row blocks, so memory is bounded by the block, not by N, and data
in memory and data streamed from a ``.npy`` or a ``tf.data.Dataset`` go through the same code. Seeding is
k-means++ refined by Lloyd's iterations (on a random subsample of at most ``init_sample`` rows), like
scikit-learn's k-means start; convergence is scikit-learn's (the change
of the mean log-likelihood below ``tol``). The fit is a TFP ``MixtureSameFamily(Categorical,
MultivariateNormalTriL)``, built by the same :func:`~vaemix.maths.priors.gaussian_mixture` as the VAE's prior.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from vaemix.errors import VaemixError
from vaemix.maths.keras import tfd
from vaemix.maths.mixture.checks import check_data, check_options, distinct_rows
from vaemix.maths.mixture.kmeans import kmeans_plus_plus, lloyd
from vaemix.maths.priors import component_log_posterior, gaussian_mixture

REG_COVAR = 1e-6  # scikit-learn's default floor on the variances


def mixture_moments(
    x: np.ndarray, resp: np.ndarray, covariance: str = "full", reg_covar: float = REG_COVAR
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


class Rows:
    """Rows of an array, an on-disk table (anything with ``shape`` and row slicing, e.g. ``NpyRows``) or a
    ``tf.data.Dataset`` of ``[B, D]`` batches, read ``block`` at a time as ``dtype`` tensors."""

    def __init__(self, data, dtype: tf.DType, block: int):
        self.data, self.dtype, self.block = data, dtype, block
        if isinstance(data, tf.data.Dataset):
            spec = data.element_spec
            if not isinstance(spec, tf.TensorSpec) or spec.shape.rank != 2 or spec.shape[-1] is None:
                raise VaemixError(f"a dataset to fit must yield [B, D] batches with a known D, got {spec}")
            self.dims, self.n = int(spec.shape[-1]), None
        else:
            if len(getattr(data, "shape", ())) != 2 or data.shape[0] == 0 or data.shape[1] == 0:
                raise VaemixError(f"x must be a non-empty [N, D] array, got shape {getattr(data, 'shape', None)}")
            self.n, self.dims = int(data.shape[0]), int(data.shape[1])

    def blocks(self) -> Iterator[tf.Tensor]:
        if isinstance(self.data, tf.data.Dataset):
            for batch in self.data:
                yield tf.cast(batch, self.dtype)
            return
        for start in range(0, self.n, self.block):
            yield tf.constant(np.asarray(self.data[start : start + self.block]), self.dtype)

    def sample(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """At most ``size`` rows: a random subsample (the first rows of a dataset), checked to be finite."""
        if isinstance(self.data, tf.data.Dataset):
            parts, count = [], 0
            for batch in self.data:
                parts.append(batch.numpy())
                count += len(parts[-1])
                if count >= size:
                    break
            if not parts:
                raise VaemixError("the dataset to fit is empty")
            return check_data(np.concatenate(parts)[:size])
        if self.n <= size:
            return check_data(np.asarray(self.data[:]))
        rows = np.sort(rng.choice(self.n, size, replace=False))
        return check_data(np.asarray(self.data[rows]) if hasattr(self.data, "__getitem__") else self.data[rows])


@dataclass
class Parameters:
    """A mixture as EM uses it: log weights ``[K]``, means ``[K, D]``, and precision Cholesky factors
    ``[K, D, D]`` (upper triangular P with precision P P^T; ``[K, D]`` standard-deviation inverses for diag)."""

    log_weights: tf.Tensor
    means: tf.Tensor
    precision_chol: tf.Tensor


def _component_log_prob(x: tf.Tensor, p: Parameters, diag: bool) -> tf.Tensor:
    """``log N(x_b; mu_k, Sigma_k)`` for every row and component, ``[B, D] -> [B, K]``."""
    d = tf.cast(tf.shape(x)[-1], x.dtype)
    if diag:
        y = x[:, None, :] * p.precision_chol[None] - (p.means * p.precision_chol)[None]  # [B, K, D]
        log_det = tf.reduce_sum(tf.math.log(p.precision_chol), -1)  # [K]
    else:
        k, d_ = tf.shape(p.means)[0], tf.shape(p.means)[1]
        flat = tf.reshape(tf.transpose(p.precision_chol, [1, 0, 2]), [d_, k * d_])  # [D, K*D]: one matrix product
        y = tf.reshape(tf.matmul(x, flat), [-1, k, d_]) - tf.linalg.matvec(p.precision_chol, p.means, transpose_a=True)
        log_det = tf.reduce_sum(tf.math.log(tf.linalg.diag_part(p.precision_chol)), -1)
    return log_det - 0.5 * (d * math.log(2 * math.pi) + tf.reduce_sum(y**2, -1))


def sufficient_statistics(x: tf.Tensor, resp: tf.Tensor, diag: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Counts ``[K]``, sums ``[K, D]`` and sums of outer products ``[K, D, D]`` (squares ``[K, D]``)."""
    nk, sk = tf.reduce_sum(resp, 0), tf.matmul(resp, x, transpose_a=True)
    if diag:
        return nk, sk, tf.matmul(resp, x**2, transpose_a=True)
    k, d = tf.shape(resp)[1], tf.shape(x)[1]
    weighted = tf.reshape(resp[:, :, None] * x[:, None, :], [-1, k * d])  # [B, K*D]: one matrix product
    return nk, sk, tf.reshape(tf.matmul(weighted, x, transpose_a=True), [k, d, d])


@tf.function(reduce_retracing=True, autograph=False)
def _e_step(x, shift, log_weights, means, precision_chol, diag: bool):
    """One block's log-likelihood sum and sufficient statistics under the current parameters (of the data
    less ``shift``: centred data keep the sums of outer products well conditioned)."""
    x = x - shift
    weighted = _component_log_prob(x, Parameters(log_weights, means, precision_chol), diag) + log_weights
    log_norm = tf.reduce_logsumexp(weighted, 1)  # [B]
    return (tf.reduce_sum(log_norm), *sufficient_statistics(x, tf.exp(weighted - log_norm[:, None]), diag))


@tf.function(reduce_retracing=True, autograph=False)
def _hard_step(x, shift, centres, diag: bool):
    """One block's sufficient statistics when each row belongs to its nearest centre (k-means seeding)."""
    x = x - shift
    # |x - c|^2 less |x|^2, which does not change the nearest centre: one matrix product
    d2 = tf.reduce_sum(centres**2, -1)[None] - 2.0 * tf.matmul(x, centres, transpose_b=True)  # [B, K]
    return sufficient_statistics(x, tf.one_hot(tf.argmin(d2, 1), tf.shape(centres)[0], dtype=x.dtype), diag)


def _m_step(nk, sk, qk, n: float, reg_covar: float | np.ndarray, diag: bool) -> tuple[np.ndarray, ...]:
    """Parameters from summed statistics: log weights, means, covariances (+ ``reg_covar`` I) as precision
    factors. In NumPy: K small matrices cost less than tracing them, and a failed Cholesky raises."""
    nk = np.asarray(nk, np.float64) + 10 * np.finfo(np.float32).eps
    means = np.asarray(sk, np.float64) / nk[:, None]
    if diag:
        var = np.asarray(qk, np.float64) / nk[:, None] - means**2 + reg_covar
        return np.log(nk / n), means, 1 / np.sqrt(np.maximum(var, reg_covar))
    cov = np.asarray(qk, np.float64) / nk[:, None, None] - means[:, :, None] * means[:, None, :]
    cov = 0.5 * (cov + cov.transpose(0, 2, 1)) + reg_covar * np.eye(means.shape[1])
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise VaemixError(
            f"a component collapsed onto too few distinct points: raise reg_covar (now {np.min(reg_covar):g})"
        ) from None
    return np.log(nk / n), means, np.linalg.inv(chol).transpose(0, 2, 1)


def hard_statistics(centred: np.ndarray, labels: np.ndarray, k: int, diag: bool) -> list[np.ndarray]:
    """Counts, sums and sums of outer products (squares) of rows already labelled: :func:`_hard_step`'s
    statistics when the k-means sample is all the data, and variational inference's start."""
    onehot = np.eye(k)[labels]  # [N, K]
    if diag:
        return [onehot.sum(0), onehot.T @ centred, onehot.T @ centred**2]
    outer = np.stack([centred[labels == j].T @ centred[labels == j] for j in range(k)])  # [K, D, D]
    return [onehot.sum(0), onehot.T @ centred, outer]


def _summed(parts: Iterator[tuple]) -> list[tf.Tensor]:
    total = None
    for part in parts:
        total = list(part) if total is None else [a + b for a, b in zip(total, part, strict=True)]
    if total is None:
        raise VaemixError("the data to fit are empty")
    return total


class GaussianMixture:
    """A K-component Gaussian mixture over ``[D]`` fitted by maximum likelihood (EM).

    ``covariance="full"`` learns full covariances, ``"diag"`` diagonal ones, in ``dtype`` (float64 by
    default; float32 halves memory and time). ``fit`` runs ``n_init`` restarts from k-means++ seeds and keeps
    the one with the highest likelihood; each stops when the mean log-likelihood changes by less than
    ``tol`` (scikit-learn's rule) or after ``max_iter`` iterations. ``reg_covar`` is added to every
    variance: one number, or one per column ``[D]`` (a floor kept in other units than the rows fitted).
    """

    def __init__(
        self,
        components: int,
        covariance: str = "full",
        n_init: int = 3,
        max_iter: int = 100,
        tol: float = 1e-3,
        reg_covar: float | np.ndarray = REG_COVAR,
        seed: int = 0,
        dtype: str = "float64",
        block: int = 65_536,
        init_sample: int = 100_000,
        lloyd_iters: int = 30,
    ):
        check_options(components, covariance)
        if dtype not in ("float32", "float64"):
            raise VaemixError(f"dtype={dtype!r} is not allowed; choose one of: float32, float64")
        self.components, self.covariance, self.dtype, self.seed = components, covariance, dtype, seed
        self.n_init, self.max_iter, self.tol, self.reg_covar = n_init, max_iter, tol, reg_covar
        self.block, self.init_sample, self.lloyd_iters = block, init_sample, lloyd_iters
        self.weights_: np.ndarray | None = None

    # -- fitting ---------------------------------------------------------------------------------

    def _pass(self, rows: Rows, step, *args) -> list[tf.Tensor]:
        """``step`` over every block of ``rows``, summed."""
        diag = self.covariance == "diag"
        return _summed(step(block, *args, diag) for block in rows.blocks())

    def _m_step(self, stats: list, n: float) -> Parameters:
        out = _m_step(*(np.asarray(s) for s in stats), n, self.reg_covar, self.covariance == "diag")
        return Parameters(*(tf.constant(a, self.dtype) for a in out))

    def _em(self, rows: Rows, shift: tf.Tensor, start: Parameters, n: float) -> tuple[float, Parameters, int, bool]:
        params, previous, ll = start, -np.inf, -np.inf
        for it in range(1, self.max_iter + 1):
            total, *stats = self._pass(rows, _e_step, shift, params.log_weights, params.means, params.precision_chol)
            ll = float(total) / n
            if not np.isfinite(ll):
                raise VaemixError("the data have rows with NaN or inf (or a component collapsed: raise reg_covar)")
            params = self._m_step(stats, n)
            if abs(ll - previous) < self.tol:
                return ll, params, it, True
            previous = ll
        return ll, params, self.max_iter, False

    def _start(self, init: tuple | None, sample: np.ndarray, rows: Rows, shift, rng) -> tuple[Parameters, float]:
        """Initial parameters: the given ``(weights, means, covariances)``, or the hard clusters of
        k-means++ seeds; and the number of rows."""
        if init is not None:
            weights, means, covs = (np.asarray(a, np.float64) for a in init)
            covs = covs if self.covariance == "full" else np.stack([np.diag(np.diag(c)) for c in covs])
            prec = np.linalg.inv(np.linalg.cholesky(covs)).transpose(0, 2, 1)
            prec = prec if self.covariance == "full" else np.stack([np.diag(p) for p in prec])
            t = lambda a: tf.constant(a, self.dtype)  # noqa: E731
            n = float(sum(int(b.shape[0]) for b in rows.blocks())) if rows.n is None else rows.n
            return Parameters(t(np.log(weights)), t(means - shift.numpy()), t(prec)), n
        centred = sample - shift.numpy()
        centres, labels, _ = lloyd(centred, kmeans_plus_plus(centred, self.components, rng), self.lloyd_iters)
        if rows.n is not None and rows.n == len(sample):  # the sample is all the rows, in order
            stats = hard_statistics(centred, labels, self.components, self.covariance == "diag")
        else:
            stats = self._pass(rows, _hard_step, shift, tf.constant(centres, self.dtype))
        n = float(np.sum(stats[0]))
        return self._m_step(stats, n), n

    def fit(self, x, init: tuple | None = None) -> GaussianMixture:
        """Fit to ``x``: an ``[N, D]`` array, an on-disk table (``NpyRows``), or a ``tf.data.Dataset`` of
        ``[B, D]`` batches (streamed: memory is bounded by ``block`` or the batch; k-means++ then seeds on a
        random subsample of at most ``init_sample`` rows, a dataset's first rows). ``init`` starts one EM
        from given ``(weights [K], means [K, D], covariances [K, D, D])`` instead of the restarts."""
        if not isinstance(x, tf.data.Dataset) and not hasattr(x, "shape"):
            x = np.asarray(x, np.float64)
        if isinstance(x, np.ndarray) and not isinstance(x, np.memmap):
            x = check_data(x)  # in memory: the first NaN row named at once
        rows, rng = Rows(x, tf.as_dtype(self.dtype), self.block), np.random.default_rng(self.seed)
        sample = rows.sample(self.init_sample, rng)
        distinct = distinct_rows(sample)  # of the subsample: counting in all of a large x costs too much
        if distinct < self.components:
            raise VaemixError(
                f"x has {distinct} distinct points for {self.components} components; use fewer components"
            )
        shift = tf.constant(sample.mean(0), self.dtype)
        runs = []
        for _ in range(1 if init is not None else self.n_init):
            start, n = self._start(init, sample, rows, shift, rng)
            runs.append(self._em(rows, shift, start, n))
        ll, params, self.n_iter_, self.converged_ = max(runs, key=lambda r: r[0])
        self.mean_log_likelihood_ = ll
        self._set(params, shift.numpy())
        return self

    def _set(self, p: Parameters, shift: np.ndarray) -> None:
        """The fitted parameters as float64 NumPy arrays: ``weights_``, ``means_``, ``covariances_``."""
        prec = p.precision_chol.numpy().astype(np.float64)
        if self.covariance == "diag":
            covs = np.stack([np.diag(1.0 / v**2) for v in prec])
        else:
            inv = np.linalg.inv(prec)  # P^-1 with precision P P^T: covariance = P^-T P^-1
            covs = inv.transpose(0, 2, 1) @ inv
        self.weights_ = np.exp(p.log_weights.numpy().astype(np.float64))
        self.weights_ /= self.weights_.sum()
        self.means_, self.covariances_ = p.means.numpy().astype(np.float64) + shift, covs

    # -- using the fit ---------------------------------------------------------------------------

    @property
    def distribution(self) -> tfd.MixtureSameFamily:
        """The fitted mixture as a TFP distribution (float64)."""
        if self.weights_ is None:
            raise VaemixError("this GaussianMixture is not fitted yet; call fit(x) first")
        return gaussian_mixture(np.log(self.weights_), self.means_, np.linalg.cholesky(self.covariances_))

    def log_prob(self, x) -> np.ndarray:
        """``log p(x_n)`` for each row: ``[N, D] -> [N]``."""
        return self.distribution.log_prob(check_data(x)).numpy()

    def predict_proba(self, x) -> np.ndarray:
        """Responsibilities ``p(k | x_n)``: ``[N, D] -> [N, K]``."""
        return np.exp(component_log_posterior(self.distribution, tf.constant(check_data(x))).numpy())

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
