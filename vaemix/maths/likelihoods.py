"""Observation likelihoods p(x|z): the decoder's last layer turns parameters into a TFP distribution."""

from __future__ import annotations

import math
from collections.abc import Sequence

import tensorflow as tf
from tensorflow_probability import math as tfp_math

from vaemix.maths.keras import keras, tfd, tfpl  # tf_keras (Keras 2)
from vaemix.maths.numerics import MIN_FEATURE_SCALE, MIN_PIXEL_SCALE

LIKELIHOODS = ("bernoulli", "gaussian", "gaussian_per_feature", "logistic")
_HALF_BIN = 0.5 / 255.0  # half the width of an 8-bit value's bin on the [0, 1] scale


@tf.custom_gradient
def _bernoulli_log_prob(events: tf.Tensor, logits: tf.Tensor):
    """``log p(events)`` under Bernoulli(sigmoid(logits)), elementwise: ``x l - softplus(l)``.

    Its gradients are written out (``l`` for the events, ``x - sigmoid(l)`` for the logits), because TF
    differentiates the cross-entropy's composite ops one by one, which is slow without XLA.
    """

    def grad(upstream: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return upstream * logits, upstream * (events - tf.sigmoid(logits))

    return -tf.nn.sigmoid_cross_entropy_with_logits(labels=events, logits=logits), grad


class LogitBernoulli(tfd.Bernoulli):
    """A logits-parameterised Bernoulli whose ``log_prob`` is the fused sigmoid cross-entropy: the same
    numbers as TFP's form for finite logits and events in [0, 1], in fewer ops."""

    def _log_prob(self, event: tf.Tensor) -> tf.Tensor:
        logits = self._logits_parameter_no_checks()
        return _bernoulli_log_prob(tf.cast(event, logits.dtype), logits)


class DiscretizedLogistic(tfd.Logistic):
    """8-bit values ``k / 255`` (k = 0..255) with mass ``F((k + 0.5) / 255) - F((k - 0.5) / 255)`` under the
    logistic CDF ``F`` of ``loc`` and ``scale`` (on the [0, 1] scale); the edge bins take the tails. As in
    PixelCNN++, without the mixture: a normalised likelihood of 8-bit data, in nats (or bits per dimension)."""

    def _log_prob(self, x: tf.Tensor) -> tf.Tensor:
        loc, scale = tf.convert_to_tensor(self.loc), tf.convert_to_tensor(self.scale)
        k = tf.round(tf.cast(x, loc.dtype) * 255.0)
        centred = (k / 255.0 - loc) / scale
        plus, minus = centred + _HALF_BIN / scale, centred - _HALF_BIN / scale
        # sigma(plus) - sigma(minus), in whichever tail keeps it accurate: 1 - sigma(t) = sigma(-t).
        left = tfp_math.log_sub_exp(tf.math.log_sigmoid(plus), tf.math.log_sigmoid(minus))
        right = tfp_math.log_sub_exp(tf.math.log_sigmoid(-minus), tf.math.log_sigmoid(-plus))
        inner = tf.where(centred > 0, right, left)
        return tf.where(k <= 0, tf.math.log_sigmoid(plus), tf.where(k >= 255, tf.math.log_sigmoid(-minus), inner))

    def _mean(self, **kwargs) -> tf.Tensor:
        return tf.clip_by_value(tf.convert_to_tensor(self.loc), 0.0, 1.0)

    def _sample_n(self, n: int, seed=None) -> tf.Tensor:
        return tf.round(tf.clip_by_value(super()._sample_n(n, seed=seed), 0.0, 1.0) * 255.0) / 255.0


def params_per_value(likelihood: str) -> int:
    """Parameters the decoder's last layer gives each value: a logit (Bernoulli), a location (per-feature
    Gaussian: its scales are a layer's own weights), or a location and a scale."""
    return 1 if likelihood in ("bernoulli", "gaussian_per_feature") else 2


class FeatureScales(keras.layers.Layer):
    """Appends one learned raw scale per value to every row: ``[B, P] -> [B, 2P]``, the per-feature
    Gaussian's scales (the same for every example)."""

    def build(self, input_shape) -> None:
        self.raw_scale = self.add_weight(name="raw_scale", shape=[input_shape[-1]], initializer="zeros")

    def call(self, loc: tf.Tensor) -> tf.Tensor:
        return tf.concat([loc, tf.broadcast_to(self.raw_scale, tf.shape(loc))], axis=-1)


def decoder_head(shape: Sequence[int], likelihood: str) -> list[keras.layers.Layer]:
    """``[..., k*P] -> p(x|z)``: independent values over ``shape`` (an image or a row), k parameters each."""
    floor = MIN_FEATURE_SCALE if likelihood == "gaussian_per_feature" else MIN_PIXEL_SCALE

    def make(params: tf.Tensor) -> tfd.Distribution:
        event = tf.concat([tf.shape(params)[:-1], shape], axis=0)
        if likelihood == "bernoulli":
            values = LogitBernoulli(logits=tf.reshape(params, event), dtype=tf.float32)
        else:
            loc, raw_scale = tf.split(params, 2, axis=-1)  # [..., P] each
            scale = floor + tf.math.softplus(raw_scale)
            family = DiscretizedLogistic if likelihood == "logistic" else tfd.Normal
            values = family(tf.reshape(loc, event), tf.reshape(scale, event))
        return tfd.Independent(values, reinterpreted_batch_ndims=len(shape))

    head = tfpl.DistributionLambda(make, convert_to_tensor_fn=tfd.Distribution.mean, dtype="float32")
    return [FeatureScales(dtype="float32"), head] if likelihood == "gaussian_per_feature" else [head]


def bits_per_dim(nats: float, dims: int) -> float:
    """A negative log-likelihood of ``dims`` values in nats, as bits per value."""
    return nats / (dims * math.log(2.0))


def is_normalised(likelihood: str, binary_data: bool) -> bool:
    """Whether p(x|z) is a normalised density (or mass) of the data it scores, so that a bound built on
    it is a bound on a log-likelihood. A Bernoulli likelihood is one only for 0/1 data: for grey levels
    it is a cross-entropy, whose numbers cannot be compared with anyone's log-likelihood."""
    return likelihood != "bernoulli" or binary_data


def score_name(likelihood: str, binary_data: bool) -> str:
    """What to call the importance-weighted estimate of log p(x): a log-likelihood only where it is one."""
    return "log_likelihood" if is_normalised(likelihood, binary_data) else "bernoulli_score"
