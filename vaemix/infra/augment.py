"""Augmentation: random shifts, rotations and zooms that teach the encoder that pose is not identity."""

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
