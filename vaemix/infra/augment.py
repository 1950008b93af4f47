"""Augmentation, the views the contrastive term compares: images shifted, rotated and zoomed (pose is not
identity), table rows partly replaced by other rows' values (no single feature is identity)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def random_affine(x: tf.Tensor, seed: tf.Tensor, max_shift: float, max_rotation: float, max_zoom: float) -> tf.Tensor:
    """Each image of ``x [B, H, W, C]`` shifted (up to ``max_shift`` of its size), rotated (up to
    ``max_rotation`` degrees) and zoomed (up to ``1 +- max_zoom``) about its centre, by the stateless
    ``seed``; pixels that come from outside are 0."""
    b, h, w = tf.shape(x)[0], tf.cast(tf.shape(x)[1], tf.float32), tf.cast(tf.shape(x)[2], tf.float32)
    u = tf.random.stateless_uniform([b, 4], seed=seed, minval=-1.0, maxval=1.0)  # [B, 4]
    angle = u[:, 0] * max_rotation * np.pi / 180.0
    zoom = 1.0 + u[:, 1] * max_zoom
    tx, ty = u[:, 2] * max_shift * w, u[:, 3] * max_shift * h
    # The op maps each *output* pixel to its input pixel: in = R(-angle) / zoom (out - c - t) + c.
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    ox, oy = cx + tx, cy + ty
    transforms = tf.stack(
        [cos, sin, cx - cos * ox - sin * oy, -sin, cos, cy + sin * ox - cos * oy, tf.zeros([b]), tf.zeros([b])],
        axis=1,
    )  # [B, 8]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=x,
        transforms=transforms,
        output_shape=tf.shape(x)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


def corrupt_rows(x: tf.Tensor, seed: tf.Tensor, corrupt_fraction: float, corrupt_noise: float) -> tf.Tensor:
    """Each row of ``x [B, F]`` with about ``corrupt_fraction`` of its features replaced by the same
    feature of a random row of the batch (a draw from the feature's marginal, which keeps its scale), plus
    Gaussian noise of standard deviation ``corrupt_noise``, by the stateless ``seed``."""
    b, f = tf.shape(x)[0], tf.shape(x)[1]
    seeds = tf.random.experimental.stateless_split(seed, 3)
    chosen = tf.random.stateless_uniform([b, f], seed=seeds[0]) < corrupt_fraction
    donors = tf.random.stateless_uniform([b, f], seed=seeds[1], minval=0, maxval=b, dtype=tf.int32)  # [B, F]
    swapped = tf.gather(tf.reshape(x, [-1]), donors * f + tf.range(f)[None, :])  # x[donor, feature]
    return tf.where(chosen, swapped, x) + corrupt_noise * tf.random.stateless_normal([b, f], seed=seeds[2])
