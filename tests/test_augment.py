"""Augmentation: the identity at zero strength, seeded draws, and a shift that moves a dot where it should."""

import numpy as np
import tensorflow as tf

from vaemix.infra.augment import random_affine


def test_random_affine_identity_and_seeded_change():
    x = tf.random.stateless_uniform([4, 12, 12, 1], seed=[0, 0])
    same = random_affine(x, tf.constant([1, 2], tf.int64), max_shift=0.0, max_rotation=0.0, max_zoom=0.0)
    np.testing.assert_allclose(same.numpy(), x.numpy(), atol=1e-6)
    a = random_affine(x, tf.constant([1, 2], tf.int64), max_shift=0.2, max_rotation=15.0, max_zoom=0.1)
    b = random_affine(x, tf.constant([1, 2], tf.int64), max_shift=0.2, max_rotation=15.0, max_zoom=0.1)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert np.abs(a.numpy() - x.numpy()).mean() > 0.05


def test_random_affine_shift_moves_a_dot():
    x = np.zeros((1, 11, 11, 1), np.float32)
    x[0, 5, 5, 0] = 1.0
    seed = tf.constant([3, 4], tf.int64)
    u = tf.random.stateless_uniform([1, 4], seed=seed, minval=-1.0, maxval=1.0).numpy()[0]
    out = random_affine(tf.constant(x), seed, max_shift=0.2, max_rotation=0.0, max_zoom=0.0).numpy()[0, ..., 0]
    rows, cols = np.indices(out.shape)
    centre = (np.sum(rows * out) / out.sum(), np.sum(cols * out) / out.sum())
    np.testing.assert_allclose(centre, (5 + u[3] * 0.2 * 11, 5 + u[2] * 0.2 * 11), atol=1e-3)
