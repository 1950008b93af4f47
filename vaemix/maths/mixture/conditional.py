"""Exact conditionals, marginals and rescalings of Gaussian mixtures, which TFP does not provide.

For a mixture ``sum_k w_k N(mu_k, S_k)`` split into observed dims ``o`` and the rest ``u``:

    p(u | o = v) = sum_k w'_k N(mu_u + S_uo S_oo^-1 (v - mu_o),  S_uu - S_uo S_oo^-1 S_ou),
    w'_k  proportional to  w_k N(v; mu_o, S_oo)

and the marginal over dims ``i`` keeps the weights with ``N(mu_i, S_ii)``. The law of ``shift + scale * x``
keeps the weights with ``N(shift + scale * mu_k, diag(scale) S_k diag(scale))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from vaemix.errors import VaemixError
from vaemix.maths.keras import tfd
from vaemix.maths.priors import gaussian_mixture


def _parts(mixture: tfd.MixtureSameFamily) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Log weights ``[K]``, means ``[K, D]`` and covariances ``[K, D, D]`` of a mixture of MVNs."""
    comps = mixture.components_distribution
    if not isinstance(comps, tfd.MultivariateNormalLinearOperator):
        raise VaemixError(
            f"condition/marginal/rescaled need a mixture of multivariate normals, got {type(comps).__name__}"
        )
    log_w = tf.math.log_softmax(mixture.mixture_distribution.logits_parameter(), axis=-1)
    return log_w, comps.mean(), comps.covariance()


def _check(indices: Sequence[int], dims: int, name: str) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0 or len(set(idx.tolist())) != idx.size or idx.min() < 0 or idx.max() >= dims:
        raise VaemixError(f"{name}={idx.tolist()} must be distinct dimensions in [0, {dims})")
    return idx


def marginal(mixture: tfd.MixtureSameFamily, indices: Sequence[int]) -> tfd.MixtureSameFamily:
    """The mixture over dimensions ``indices`` (in that order): same weights, sliced means/covariances."""
    log_w, loc, cov = _parts(mixture)
    idx = _check(indices, loc.shape[-1], "indices")
    sub_cov = tf.gather(tf.gather(cov, idx, axis=-2), idx, axis=-1)  # [K, I, I]
    return gaussian_mixture(log_w, tf.gather(loc, idx, axis=-1), tf.linalg.cholesky(sub_cov))


def condition(mixture: tfd.MixtureSameFamily, observed_indices: Sequence[int], values) -> tfd.MixtureSameFamily:
    """``p(x_u | x_o = values)`` exactly: a mixture over the unobserved dims (ascending order).

    Args:
      mixture: a ``MixtureSameFamily`` of multivariate normals over ``[D]`` (no batch shape).
      observed_indices: the ``O`` observed dimensions, ``1 <= O < D``.
      values: ``[O]`` or ``[N, O]`` observed values; the result has batch ``[]`` or ``[N]``.
    """
    log_w, loc, cov = _parts(mixture)  # [K], [K, D], [K, D, D]
    d = loc.shape[-1]
    o = _check(observed_indices, d, "observed_indices")
    if o.size >= d:
        raise VaemixError(f"observed_indices cover all {d} dimensions; nothing is left to condition")
    u = np.setdiff1d(np.arange(d), o)
    v = tf.convert_to_tensor(values, loc.dtype)
    if v.shape[-1] != o.size:
        raise VaemixError(f"values have {v.shape[-1]} columns for {o.size} observed dimensions")
    take = lambda m, rows, cols: tf.gather(tf.gather(m, rows, axis=-2), cols, axis=-1)  # noqa: E731
    s_oo, s_uo, s_uu = take(cov, o, o), take(cov, u, o), take(cov, u, u)  # [K, O, O], [K, U, O], [K, U, U]
    chol_oo = tf.linalg.cholesky(s_oo)
    gain = tf.linalg.matrix_transpose(tf.linalg.cholesky_solve(chol_oo, tf.linalg.matrix_transpose(s_uo)))  # [K,U,O]
    diff = v[..., None, :] - tf.gather(loc, o, axis=-1)  # [..., K, O]
    cond_loc = tf.gather(loc, u, axis=-1) + tf.linalg.matvec(gain, diff)  # [..., K, U]
    cond_cov = s_uu - tf.matmul(gain, s_uo, transpose_b=True)  # [K, U, U]
    log_lik = tfd.MultivariateNormalTriL(tf.gather(loc, o, axis=-1), chol_oo).log_prob(v[..., None, :])  # [..., K]
    scale = tf.linalg.cholesky(0.5 * (cond_cov + tf.linalg.matrix_transpose(cond_cov)))
    scale = tf.broadcast_to(scale, tf.concat([tf.shape(cond_loc), [u.size]], 0))
    return gaussian_mixture(tf.math.log_softmax(log_w + log_lik, axis=-1), cond_loc, scale)


def rescaled(mixture: tfd.MixtureSameFamily, shift, scale) -> tfd.MixtureSameFamily:
    """The law of ``shift + scale * x`` for ``x`` drawn from ``mixture``: a fit to standardised features
    mapped back to their own units (a batch of mixtures too). ``shift`` and ``scale`` are ``[D]``; ``scale``
    must be positive."""
    log_w, loc, cov = _parts(mixture)  # [..., K], [..., K, D], [..., K, D, D]
    scale = tf.convert_to_tensor(scale, loc.dtype)
    positive = tf.get_static_value(tf.reduce_all(scale > 0))  # None: a variable inside a traced model
    if positive is not None and not positive:
        raise VaemixError("scale must be positive in every dimension")
    comps = mixture.components_distribution
    tril = comps.scale.to_dense() if isinstance(comps, tfd.MultivariateNormalTriL) else tf.linalg.cholesky(cov)
    tril = tril * scale[:, None]  # diag(scale) L stays lower-triangular
    return gaussian_mixture(log_w, tf.convert_to_tensor(shift, loc.dtype) + scale * loc, tril)
