"""Mixture density networks: a tf_keras model whose output layer is a TFP mixture of MVNTriL, so
``predict(x)`` is the whole conditional distribution p(y|x), not a point estimate. The network sees
standardised inputs and fits standardised targets, so neither's units decide the fit; its mixture is mapped
back to the targets' units inside the model, which therefore takes and scores rows as they are."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from vaemix.errors import VaemixError
from vaemix.maths.keras import keras, tfd, tfpl  # tf_keras (Keras 2)
from vaemix.maths.mixture.checks import check_data, unit_scale
from vaemix.maths.mixture.conditional import rescaled
from vaemix.maths.priors import gaussian_mixture


class _Units:
    """Untrained ``shift`` and ``scale`` weights ``[dims]`` of a layer, set from the training rows and saved
    with the network."""

    def _add_units(self, dims: int) -> None:
        self.shift = self.add_weight(name="shift", shape=[dims], initializer="zeros", trainable=False)
        self.scale = self.add_weight(name="scale", shape=[dims], initializer="ones", trainable=False)

    def set_units(self, rows: np.ndarray) -> None:
        mean, std = rows.mean(0), rows.std(0)  # [dims]
        self.shift.assign(mean)
        self.scale.assign(unit_scale(mean, std))


class _Standardised(_Units, keras.layers.Layer):
    """``(x - shift) / scale``."""

    def __init__(self, dims: int, **kwargs):
        super().__init__(**kwargs)
        self._add_units(dims)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return (x - self.shift) / self.scale


class _InUnits(_Units, tfpl.DistributionLambda):
    """The mixture over standardised targets as the law of the targets in their own units."""

    def __init__(self, dims: int, **kwargs):
        super().__init__(lambda mixture: rescaled(_plain(mixture), self.shift, self.scale), **kwargs)
        self._add_units(dims)


def _plain(mixture) -> tfd.MixtureSameFamily:
    """tfpl's mixture layer wraps the mixture and its components for Keras; the same mixture, unwrapped."""
    comps = mixture.components_distribution
    return gaussian_mixture(mixture.mixture_distribution.logits_parameter(), comps.mean(), comps.scale.to_dense())


class MixtureDensityNetwork:
    """``p(y | x) = sum_k pi_k(x) N(y; mu_k(x), L_k(x) L_k(x)^T)`` with an MLP of widths ``hidden``."""

    def __init__(
        self, input_dim: int, output_dim: int, components: int, hidden: Sequence[int] = (64, 64), seed: int = 0
    ):
        if min(input_dim, output_dim, components) < 1:
            raise VaemixError("input_dim, output_dim and components must all be >= 1")
        keras.utils.set_random_seed(seed)
        component = tfpl.MultivariateNormalTriL(output_dim)
        self.input_dim, self.output_dim = input_dim, output_dim
        self.inputs, self.targets = _Standardised(input_dim), _InUnits(output_dim)
        self.model = keras.Sequential(
            [keras.Input((input_dim,)), self.inputs]
            + [keras.layers.Dense(w, activation="tanh") for w in hidden]
            + [
                keras.layers.Dense(tfpl.MixtureSameFamily.params_size(components, component.params_size(output_dim))),
                tfpl.MixtureSameFamily(components, component),  # [B] batch, [output_dim] event, standardised
                self.targets,
            ],
            name="mdn",
        )

    def _xy(self, x, y=None) -> tuple[np.ndarray, np.ndarray | None]:
        x = check_data(np.asarray(x).reshape(len(x), -1), name="x").astype(np.float32)
        if x.shape[1] != self.input_dim:
            raise VaemixError(f"x has {x.shape[1]} columns; this network takes {self.input_dim}")
        if y is None:
            return x, None
        y = check_data(np.asarray(y).reshape(len(y), -1), name="y").astype(np.float32)
        if y.shape != (len(x), self.output_dim):
            raise VaemixError(f"y has shape {y.shape}; expected ({len(x)}, {self.output_dim})")
        return x, y

    def fit(self, x, y, epochs: int = 200, batch_size: int = 256, lr: float = 3e-3) -> list[float]:
        """Minimise the mean negative log-likelihood of ``y`` given ``x`` (standardised by their means and
        standard deviations over these rows); returns the loss per epoch, in ``y``'s units."""
        x, y = self._xy(x, y)
        self.inputs.set_units(x)
        self.targets.set_units(y)
        self.model.compile(keras.optimizers.Adam(lr), loss=lambda target, dist: -dist.log_prob(target))
        history = self.model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True)
        return history.history["loss"]

    def predict(self, x) -> tfd.Distribution:
        """The conditional distribution p(y | x): batch ``[N]``, event ``[output_dim]``."""
        x, _ = self._xy(x)
        return self.model(tf.constant(x))

    def nll(self, x, y) -> float:
        """Mean ``-log p(y | x)`` in nats."""
        x, y = self._xy(x, y)
        return float(-tf.reduce_mean(self.model(tf.constant(x)).log_prob(y)))
