"""Latent priors p(z): a learnable Gaussian mixture and the fixed standard normal.

Each prior is a ``tf.Module`` whose ``__call__`` rebuilds the TFP distribution from its variables, so
gradients flow to the variables and checkpoints hold only the variables.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from vaemix.maths.keras import tfb, tfd
from vaemix.maths.numerics import DIAG_SHIFT
from vaemix.maths.streams import Stream


def gaussian_mixture(logits: tf.Tensor, loc: tf.Tensor, scale_tril: tf.Tensor) -> tfd.MixtureSameFamily:
    """``sum_k softmax(logits)_k N(loc_k, scale_tril_k scale_tril_k^T)``.

    Args:
      logits: ``[..., K]`` unnormalised log mixture weights.
      loc: ``[..., K, D]`` component means.
      scale_tril: ``[..., K, D, D]`` lower-triangular Cholesky factors of the component covariances.
    """
    return tfd.MixtureSameFamily(
        mixture_distribution=tfd.Categorical(logits=logits),
        components_distribution=tfd.MultivariateNormalTriL(loc=loc, scale_tril=scale_tril),
    )


def component_log_posterior(mixture: tfd.MixtureSameFamily, z: tf.Tensor) -> tf.Tensor:
    """``log p(k|z)`` for every component: ``[..., D] -> [..., K]``."""
    log_joint = mixture.mixture_distribution.logits_parameter() + mixture.components_distribution.log_prob(
        z[..., None, :]
    )  # [..., K]
    return tf.math.log_softmax(log_joint, axis=-1)


def _log_posteriors(mixture: tfd.MixtureSameFamily, z, chunk: int) -> np.ndarray:
    """``log p(k|z)`` ``[N, K]``, ``chunk`` rows at a time (the components' log densities broadcast to
    ``[chunk, K, D]``)."""
    z = np.asarray(z)
    parts = [
        component_log_posterior(mixture, tf.convert_to_tensor(z[i : i + chunk], mixture.dtype)).numpy()
        for i in range(0, len(z), chunk)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, mixture.mixture_distribution.logits.shape[-1]))


def assignments(mixture: tfd.MixtureSameFamily, z, chunk: int = 16_384) -> tuple[np.ndarray, float]:
    """The model's own clusters ``argmax_k p(k|z)`` (``[N, D] -> [N]``) and their confidence, the mean over
    rows of ``max_k p(k|z)``: 1 when every point sits inside one component, 1/K when the components overlap
    completely. Needs no labels; one pass over ``z`` for both."""
    log_post = _log_posteriors(mixture, z, chunk)  # [N, K]
    return np.argmax(log_post, axis=-1), float(np.exp(log_post.max(-1)).mean())


def most_probable_component(mixture: tfd.MixtureSameFamily, z, chunk: int = 16_384) -> np.ndarray:
    """The model's own clusters: ``argmax_k p(k|z)``, ``[N, D] -> [N]``."""
    return assignments(mixture, z, chunk)[0]


class MixturePrior(tf.Module):
    """Learnable ``MixtureSameFamily(Categorical, MultivariateNormalTriL)`` over ``[D]``.

    ``covariance="full"`` learns every entry of each Cholesky factor (positive diagonal through
    ``FillScaleTriL``); ``"diag"`` learns only its diagonal (softplus), still as a ``MultivariateNormalTriL``.
    """

    def __init__(self, components: int, latent_dim: int, covariance: str = "full", seed: int = 0, name: str = "prior"):
        super().__init__(name=name)
        self.components, self.latent_dim, self.covariance = components, latent_dim, covariance
        self._fill = tfb.FillScaleTriL(diag_shift=DIAG_SHIFT)  # diag = softplus(raw) + shift > 0
        self.logits = tf.Variable(tf.zeros([components]), name="logits")  # [K]
        self.loc = tf.Variable(
            tf.random.stateless_normal([components, latent_dim], seed=[seed, Stream.PRIOR_LOC]), name="loc"
        )  # [K, D]
        eye = tf.eye(latent_dim, batch_shape=[components])
        raw = (
            self._fill.inverse(eye)
            if covariance == "full"
            else tfb.Softplus().inverse(tf.ones([components, latent_dim]))
        )
        self.scale_params = tf.Variable(raw, name="scale_params")  # [K, D(D+1)/2] or [K, D]

    def scale_tril(self) -> tf.Tensor:
        """``[K, D, D]`` Cholesky factors of the component covariances."""
        if self.covariance == "full":
            return self._fill.forward(self.scale_params)
        return tf.linalg.diag(tf.math.softplus(self.scale_params) + DIAG_SHIFT)

    def __call__(self) -> tfd.MixtureSameFamily:
        return gaussian_mixture(self.logits, self.loc, self.scale_tril())

    def assign(self, weights, loc, covariance) -> None:
        """Set the mixture to given weights ``[K]``, means ``[K, D]`` and covariances ``[K, D, D]``."""
        weights = tf.convert_to_tensor(weights, tf.float32)
        self.logits.assign(tf.math.log(weights))
        self.loc.assign(tf.convert_to_tensor(loc, tf.float32))
        chol = tf.linalg.cholesky(tf.convert_to_tensor(covariance, tf.float32))
        if self.covariance == "full":
            self.scale_params.assign(self._fill.inverse(chol))
        else:
            self.scale_params.assign(tfb.Softplus().inverse(tf.linalg.diag_part(chol) - DIAG_SHIFT))


class StandardNormalPrior(tf.Module):
    """Fixed ``N(0, I)`` over ``[D]``: the plain-VAE baseline (no variables)."""

    def __init__(self, latent_dim: int, name: str = "prior"):
        super().__init__(name=name)
        self.latent_dim = latent_dim

    def __call__(self) -> tfd.MultivariateNormalDiag:
        return tfd.MultivariateNormalDiag(loc=tf.zeros([self.latent_dim]))


Prior = MixturePrior | StandardNormalPrior


def build_prior(kind: str, latent_dim: int, components: int = 10, covariance: str = "full", seed: int = 0) -> Prior:
    if kind == "normal":
        return StandardNormalPrior(latent_dim)
    return MixturePrior(components, latent_dim, covariance, seed=seed)
