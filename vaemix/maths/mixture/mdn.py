"""Mixture density networks: a tf_keras model whose output layer is a TFP mixture of MVNTriL, so
``predict(x)`` is the whole conditional distribution p(y|x), not a point estimate."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from vaemix.errors import VaemixError
from vaemix.maths.keras import keras, tfd, tfpl  # tf_keras (Keras 2)
from vaemix.maths.mixture.checks import check_data


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
        self.model = keras.Sequential(
            [keras.Input((input_dim,))]
            + [keras.layers.Dense(w, activation="tanh") for w in hidden]
            + [
                keras.layers.Dense(tfpl.MixtureSameFamily.params_size(components, component.params_size(output_dim))),
                tfpl.MixtureSameFamily(components, component),  # [B] batch, [output_dim] event
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
        """Minimise the mean negative log-likelihood of ``y`` given ``x``; returns the loss per epoch."""
        x, y = self._xy(x, y)
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
