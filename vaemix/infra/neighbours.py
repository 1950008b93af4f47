"""Neighbour views for a table: the contrastive pair of a row is a corruption of the row and a corruption of
one of its nearest training rows, so the encoder learns what near rows share (a table has no poses to
augment). Neighbours are exact when the split is in memory and small enough to search, else found among
the rows of the batch."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from sklearn.neighbors import NearestNeighbors

from vaemix.infra.examples import Examples

log = logging.getLogger("vaemix")

EXACT_ROWS = 50_000  # the exact search compares every pair of training rows: 1.25e9 pairs here


@dataclass(frozen=True)
class Neighbours:
    """Each training row's ``k`` nearest rows: ``table [N, k]`` of positions in the split, or None when
    they are found within each batch."""

    k: int
    table: np.ndarray | None = None


def find_neighbours(examples: Examples, k: int) -> Neighbours | None:
    """The ``k`` nearest rows (Euclidean, in the model's inputs) of each training row of a table; None for
    ``k=0``."""
    k = min(k, len(examples) - 1)
    if k < 1:
        return None
    if not isinstance(examples.values, np.ndarray) or len(examples) > EXACT_ROWS:
        log.info("neighbour views: each row's %d nearest rows within its batch (%d rows)", k, len(examples))
        return Neighbours(k)
    log.info(
        "neighbour views: each row's second view from one of its %d nearest training rows (%d rows)", k, len(examples)
    )
    rows = examples.preprocessing.apply(examples.raw())  # [N, F]
    _, table = NearestNeighbors(n_neighbors=k).fit(rows).kneighbors()  # without the row itself
    return Neighbours(k, table.astype(np.int32))


def partner_positions(neighbours: Neighbours, idx: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """For the split positions ``idx [B]``, one of each row's ``k`` nearest rows, drawn by ``seed``."""
    near = tf.gather(tf.constant(neighbours.table), idx)  # [B, k]
    pick = tf.random.stateless_uniform(tf.shape(idx), seed=seed, minval=0, maxval=neighbours.k, dtype=tf.int32)
    return tf.gather(near, pick, batch_dims=1)  # [B]


def partner_in_batch(x: tf.Tensor, k: int, seed: tf.Tensor) -> tf.Tensor:
    """For the rows ``x [B, F]``, one of each row's ``k`` nearest other rows of the batch, drawn by ``seed``."""
    sq = tf.reduce_sum(tf.square(x), axis=1)  # [B]
    d2 = sq[:, None] + sq[None, :] - 2.0 * tf.matmul(x, x, transpose_b=True)  # [B, B]
    d2 = tf.linalg.set_diag(d2, tf.fill(tf.shape(sq), np.float32(np.inf)))
    k = tf.minimum(k, tf.shape(x)[0] - 1)
    _, near = tf.math.top_k(-d2, k=k)  # [B, k]
    pick = tf.random.stateless_uniform(tf.shape(sq), seed=seed, minval=0, maxval=k, dtype=tf.int32)
    return tf.gather(x, tf.gather(near, pick, batch_dims=1))  # [B, F]
