"""Observation likelihoods p(x|z): the decoder's last layer turns parameters into a TFP distribution."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from vaemix.maths.keras import keras, tfd, tfpl  # tf_keras (Keras 2)
from vaemix.maths.numerics import MIN_PIXEL_SCALE


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


def params_per_pixel(likelihood: str) -> int:
    """Bernoulli needs a logit per pixel, Gaussian a location and a scale."""
    return 1 if likelihood == "bernoulli" else 2


def decoder_head(image_shape: Sequence[int], likelihood: str) -> keras.layers.Layer:
    """``[..., k*P] -> p(x|z)``: independent pixels over ``image_shape``, k parameters a pixel."""

    def make(params: tf.Tensor) -> tfd.Distribution:
        shape = tf.concat([tf.shape(params)[:-1], image_shape], axis=0)
        if likelihood == "bernoulli":
            pixels = LogitBernoulli(logits=tf.reshape(params, shape), dtype=tf.float32)
        else:
            loc, raw_scale = tf.split(params, 2, axis=-1)  # [..., P] each
            scale = MIN_PIXEL_SCALE + tf.math.softplus(raw_scale)
            pixels = tfd.Normal(tf.reshape(loc, shape), tf.reshape(scale, shape))
        return tfd.Independent(pixels, reinterpreted_batch_ndims=len(image_shape))

    return tfpl.DistributionLambda(make, convert_to_tensor_fn=tfd.Distribution.mean, dtype="float32")


def is_normalised(likelihood: str, binary_data: bool) -> bool:
    """Whether p(x|z) is a normalised density (or mass) of the data it scores, so that a bound built on
    it is a bound on a log-likelihood. A Bernoulli likelihood is one only for 0/1 data: for grey levels
    it is a cross-entropy, whose numbers cannot be compared with anyone's log-likelihood."""
    return likelihood != "bernoulli" or binary_data


def score_name(likelihood: str, binary_data: bool) -> str:
    """What to call the importance-weighted estimate of log p(x): a log-likelihood only where it is one."""
    return "log_likelihood" if is_normalised(likelihood, binary_data) else "bernoulli_score"
