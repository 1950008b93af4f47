"""The single place vaemix imports Keras.

TFP's distribution layers are Keras 2 layers; mixing them with Keras 3 (the Keras built into TF >= 2.16)
objects fails in confusing ways, so every module takes Keras from here.
"""

import tensorflow_probability as tfp
import tf_keras as keras

tfd = tfp.distributions
tfb = tfp.bijectors
tfpl = tfp.layers

__all__ = ["keras", "tfb", "tfd", "tfpl"]
