"""The VAE: an encoder q(z|x), a decoder p(x|z) and a latent prior p(z), held together."""

from __future__ import annotations

import tensorflow as tf

from vaemix.maths.keras import keras  # tf_keras (Keras 2)
from vaemix.maths.priors import Prior


class VAE(tf.Module):
    """Holds the three parts; ``trainable_variables`` collects all of them (prior included)."""

    def __init__(self, encoder: keras.Model, decoder: keras.Model, prior: Prior):
        super().__init__(name="vae")
        self.encoder, self.decoder, self.prior = encoder, decoder, prior

    @property
    def latent_dim(self) -> int:
        return self.prior.latent_dim

    @property
    def network_variables(self) -> list[tf.Variable]:
        """The encoder's and decoder's trainable variables (the prior's excluded)."""
        return [*self.encoder.trainable_variables, *self.decoder.trainable_variables]
