"""The VAE: an encoder, a decoder and a latent prior, built from the model and prior configs."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from vaemix.config import ModelConfig, PriorConfig
from vaemix.keras import keras  # tf_keras (Keras 2)
from vaemix.networks import build_decoder, build_encoder
from vaemix.priors import Prior, build_prior


class VAE(tf.Module):
    """Holds the three parts; ``trainable_variables`` collects all of them (prior included)."""

    def __init__(self, encoder: keras.Model, decoder: keras.Model, prior: Prior):
        super().__init__(name="vae")
        self.encoder, self.decoder, self.prior = encoder, decoder, prior

    @property
    def latent_dim(self) -> int:
        return self.prior.latent_dim


def build_vae(image_shape: Sequence[int], model: ModelConfig, prior: PriorConfig, seed: int = 0) -> VAE:
    """Networks and prior for images of ``image_shape`` (``[H, W, C]``); weights seeded by ``seed``."""
    keras.utils.set_random_seed(seed)  # Keras initialisers draw from the global seeds
    arch = dict(
        architecture=model.architecture, hidden=model.hidden, filters=model.filters, conv_dense=model.conv_dense
    )
    encoder = build_encoder(image_shape, model.latent_dim, sphere_radius=model.sphere_radius, **arch)
    decoder = build_decoder(image_shape, model.latent_dim, likelihood=model.likelihood, **arch)
    return VAE(encoder, decoder, build_prior(prior.kind, model.latent_dim, prior.components, prior.covariance, seed))
