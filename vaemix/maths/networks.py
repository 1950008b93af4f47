"""Encoder q(z|x) and decoder p(x|z) networks that end in TFP distribution layers.

The layers that produce distribution parameters and the distribution heads are float32 layers, so
under a mixed-precision policy only the hidden layers compute in low precision.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf

from vaemix.maths.keras import keras, tfb, tfd, tfpl  # tf_keras (Keras 2)
from vaemix.maths.likelihoods import decoder_head, params_per_value
from vaemix.maths.numerics import DIAG_SHIFT


def _encoder_head(latent_dim: int, sphere_radius: float | None = None) -> list[keras.layers.Layer]:
    layers = [
        keras.layers.Dense(tfpl.MultivariateNormalTriL.params_size(latent_dim), dtype="float32", name="latent_params")
    ]
    if sphere_radius:
        # The mean lives on a sphere: the contrastive pretraining shapes directions, not norms, and the
        # clusters it forms there are the ones a Gaussian mixture over z can model.
        def on_sphere(params: tf.Tensor) -> tf.Tensor:
            loc = sphere_radius * tf.math.l2_normalize(params[..., :latent_dim], axis=-1)
            return tf.concat([loc, params[..., latent_dim:]], axis=-1)

        layers.append(keras.layers.Lambda(on_sphere, dtype="float32"))
    return layers + [
        # scale_tril through FillScaleTriL: softplus diagonal (+ DIAG_SHIFT), so q never degenerates.
        tfpl.MultivariateNormalTriL(latent_dim, convert_to_tensor_fn=tfd.Distribution.mean, dtype="float32"),
    ]


def reset_encoder_scale(encoder: keras.Model, latent_dim: int, scale: float) -> None:
    """Make q(z|x) = N(mean(x), scale^2 I) for every x, keeping the mean.

    Autoencoder pretraining trains only the mean, so the scale outputs it leaves behind are arbitrary
    (tiny diagonals next to large off-diagonals): sampling from them wipes out what pretraining learnt
    and makes log q(z|x) explode in the first ELBO steps.
    """
    head = encoder.get_layer("latent_params")
    kernel, bias = head.get_weights()
    raw = tfb.FillScaleTriL(diag_shift=DIAG_SHIFT).inverse(scale * tf.eye(latent_dim)).numpy()  # [D(D+1)/2]
    kernel[:, latent_dim:] = 0.0
    bias[latent_dim:] = raw
    head.set_weights([kernel, bias])


def normalise_last_hidden(encoder: keras.Model, latent_dim: int, batches: Iterable) -> float:
    """Divide the last hidden layer of a sphere-mean encoder by the mean L2 norm of its outputs over
    ``batches`` (and the mean head's bias with it, which leaves the mean's direction, all the sphere keeps,
    unchanged); q's scale is kept too. Returns that norm.

    Pretraining leaves the layer at any magnitude (the sphere bounds nothing before it), and the ELBO
    phase's first Adam step then moves the scale head by ~lr x the layer's L1 norm a row: thousands of
    units on a few rows of many features.
    """
    head = encoder.get_layer("latent_params")
    hidden = encoder.layers[encoder.layers.index(head) - 1]  # a ReLU layer: dividing it divides its output
    features = keras.Model(encoder.inputs, hidden.output)
    norms = [tf.norm(tf.cast(features(x), tf.float32), axis=-1).numpy() for x in batches]  # [B] each
    norm = float(np.mean(np.concatenate(norms)))
    if not norm > 0.0:
        return 1.0  # every unit dead on these rows: nothing to rescale
    kernel, bias = hidden.get_weights()
    hidden.set_weights([kernel / norm, bias / norm])
    kernel, bias = head.get_weights()
    kernel[:, latent_dim:] *= norm  # the scale outputs see the smaller layer unchanged
    bias[:latent_dim] /= norm
    head.set_weights([kernel, bias])
    return norm


def build_encoder(
    shape: Sequence[int],
    latent_dim: int,
    architecture: str,
    hidden: Sequence[int] = (500, 500, 2000),
    filters: Sequence[int] = (32, 64),
    conv_dense: int = 256,
    sphere_radius: float | None = None,
) -> keras.Model:
    """``x [B, *shape] -> q(z|x)``, a MultivariateNormalTriL with batch ``[B]`` and event ``[latent_dim]``, for
    images ``[H, W, C]`` or rows ``[F]`` (the MLP); with ``sphere_radius`` its mean is scaled to that norm."""
    layers: list[keras.layers.Layer] = [keras.Input(tuple(shape))]
    if architecture == "mlp":
        layers += [keras.layers.Flatten()]
        layers += [keras.layers.Dense(w, activation="relu") for w in hidden]
    else:
        layers += [keras.layers.Conv2D(f, 4, strides=2, padding="same", activation="relu") for f in filters]
        layers += [keras.layers.Flatten(), keras.layers.Dense(conv_dense, activation="relu")]
    return keras.Sequential(layers + _encoder_head(latent_dim, sphere_radius), name="encoder")


def _conv_decoder(shape: Sequence[int], k: int, filters: Sequence[int], conv_dense: int) -> list:
    """Dense layers to a small feature map, transposed convolutions up to ``[H, W, k*C]``, then flat with
    each parameter kind one contiguous block."""
    h, w, c = shape
    up = 2 ** len(filters)
    h0, w0 = math.ceil(h / up), math.ceil(w / up)
    layers = [
        keras.layers.Dense(conv_dense, activation="relu"),
        keras.layers.Dense(h0 * w0 * filters[-1], activation="relu"),
        keras.layers.Reshape((h0, w0, filters[-1])),
    ]
    layers += [
        keras.layers.Conv2DTranspose(f, 4, strides=2, padding="same", activation="relu") for f in reversed(filters[:-1])
    ]
    return layers + [
        keras.layers.Conv2DTranspose(k * c, 4, strides=2, padding="same", dtype="float32"),
        keras.layers.Cropping2D(((0, h0 * up - h), (0, w0 * up - w))),
        keras.layers.Reshape((h, w, k, c)),  # [H, W, k*C] -> [k, H, W, C] -> flat
        keras.layers.Permute((3, 1, 2, 4)),
        keras.layers.Flatten(),
    ]


def build_decoder(
    shape: Sequence[int],
    latent_dim: int,
    architecture: str,
    likelihood: str,
    hidden: Sequence[int] = (500, 500, 2000),
    filters: Sequence[int] = (32, 64),
    conv_dense: int = 256,
) -> keras.Model:
    """``z [B, latent_dim] -> p(x|z)``, independent values with batch ``[B]`` and event ``shape`` (an image
    ``[H, W, C]``, or ``[F]`` for the MLP)."""
    k = params_per_value(likelihood)
    layers: list[keras.layers.Layer] = [keras.Input((latent_dim,))]
    if architecture == "mlp":
        layers += [keras.layers.Dense(u, activation="relu") for u in reversed(hidden)]
        layers += [keras.layers.Dense(k * math.prod(shape), dtype="float32")]  # parameters in float32
    else:
        layers += _conv_decoder(shape, k, filters, conv_dense)
    return keras.Sequential(layers + decoder_head(shape, likelihood), name="decoder")
