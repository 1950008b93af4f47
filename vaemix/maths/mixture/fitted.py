"""A fitted Gaussian mixture as checkpointable variables, so that a fit is saved once and never redone."""

from __future__ import annotations

import tensorflow as tf

from vaemix.maths.keras import tfd
from vaemix.maths.priors import gaussian_mixture


class FittedMixture(tf.Module):
    """``K`` components over ``[D]`` in float64: log weights, means and Cholesky factors, free variables
    (they are set from a fit, not trained)."""

    def __init__(self, components: int, dims: int, name: str = "mixture"):
        super().__init__(name=name)
        self.logits = tf.Variable(tf.zeros([components], tf.float64), name="logits")  # [K]
        self.loc = tf.Variable(tf.zeros([components, dims], tf.float64), name="loc")  # [K, D]
        self.scale_tril = tf.Variable(tf.eye(dims, batch_shape=[components], dtype=tf.float64), name="scale_tril")

    def assign(self, mixture: tfd.MixtureSameFamily) -> FittedMixture:
        comps = mixture.components_distribution
        self.logits.assign(tf.cast(mixture.mixture_distribution.logits_parameter(), tf.float64))
        self.loc.assign(tf.cast(comps.mean(), tf.float64))
        self.scale_tril.assign(tf.cast(tf.linalg.cholesky(comps.covariance()), tf.float64))
        return self

    def __call__(self) -> tfd.MixtureSameFamily:
        return gaussian_mixture(self.logits, self.loc, self.scale_tril)
