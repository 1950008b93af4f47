"""The ``tf.data`` input pipeline: images fed by index, one seeded permutation per epoch.

Each epoch's order is a function of (seed, epoch) and every random draw of a batch a function of
(seed, its counter), so a resumed run can start at any step and the data order and draws continue
exactly where they stopped (distributed iterators cannot be checkpointed).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from vaemix.infra.augment import corrupt_rows, random_affine
from vaemix.infra.examples import Examples
from vaemix.infra.neighbours import Neighbours, partner_in_batch, partner_positions
from vaemix.maths.streams import AUGMENTATION_OFFSET, DYNAMIC_BINARIZATION_OFFSET, NEIGHBOUR_OFFSET, Stream


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
    """Full global batches per epoch (the remainder is dropped so every replica gets equal work)."""
    return num_examples // global_batch_size


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The example order of one epoch: a function of (seed, epoch) only, so resumes reproduce it."""
    return np.random.default_rng([seed, Stream.EPOCH_ORDER, epoch]).permutation(num_examples)


def index_batches(
    num_examples: int,
    global_batch_size: int,
    seed: int,
    start_step: int,
    total_steps: int,
    num_chunks: int = 1,
    chunks: slice = slice(None),
) -> tuple[np.ndarray, np.ndarray]:
    """Example indices ``[rows, b]`` for global steps ``[start_step, total_steps)`` and a counter per row.

    Each global batch is cut into ``num_chunks`` consecutive chunks of ``b = global_batch / num_chunks``
    examples (one per replica) and only the ``chunks`` slice is kept (one input pipeline's replicas),
    so any replica count sees exactly the examples a single device would. The counter of a row is its
    global chunk number ``step * num_chunks + chunk``: a seed that no other row, run or resume shares.
    """
    spe = steps_per_epoch(num_examples, global_batch_size)
    first_epoch, last_epoch = start_step // spe, (total_steps - 1) // spe
    order = np.concatenate(
        [
            epoch_permutation(num_examples, seed, e)[: spe * global_batch_size]
            for e in range(first_epoch, last_epoch + 1)
        ]
    )
    b = global_batch_size // num_chunks
    steps = np.arange(start_step, total_steps)
    order = order.reshape(-1, num_chunks, b)[steps - first_epoch * spe, chunks]  # [steps, c, b]
    counters = steps[:, None] * num_chunks + np.arange(num_chunks)[chunks][None, :]  # [steps, c]
    return order.reshape(-1, b).astype(np.int32), counters.reshape(-1).astype(np.int64)


def _reader(examples: Examples):
    """``positions [b] -> float32 model inputs [b, ...]`` of the split, as a TF function."""
    if examples.preprocessing.kind == "images":
        pixels = tf.constant(examples.values)  # [N, H, W, C] uint8, kept on the host
        return lambda idx: tf.cast(tf.gather(pixels, idx), tf.float32) / 255.0
    if isinstance(examples.values, np.ndarray):  # a table in memory: preprocessed once
        rows = tf.constant(examples.preprocessing.apply(examples.raw()))
        return lambda idx: tf.gather(rows, idx)
    read = lambda idx: examples.preprocessing.apply(examples.take(idx))  # noqa: E731  (rows read from disk)
    return lambda idx: tf.ensure_shape(tf.numpy_function(read, [idx], tf.float32), [None, *examples.shape])


def train_dataset(
    examples: Examples,
    batches: np.ndarray,
    counters: np.ndarray,
    binarize: str,
    seed: int,
    augment: dict[str, float] | None = None,
    views: int = 1,
    threads: int | None = None,
    neighbours: Neighbours | None = None,
) -> tf.data.Dataset:
    """``(views, targets)`` batches of the split ``examples`` for the position rows of ``batches`` (see
    :func:`index_batches`): ``targets`` are the inputs the decoder must explain, ``views`` a tuple of
    ``views`` tensors like them for the encoder to see: the targets themselves, or independent augmented
    views with ``augment`` (:func:`random_affine`'s keys for images, :func:`corrupt_rows`'s for a table);
    with ``neighbours`` (a table), the views after the first augment one of each row's nearest rows.
    Dynamic binarisation and augmentation draw from stateless seeds ``(seed, counter)``, so a resumed run
    draws what the uninterrupted run would have. ``threads`` caps the pipeline at that many threads of its
    own (None: tf.data's autotuning).
    """
    read = _reader(examples)
    augmenter = random_affine if examples.preprocessing.kind == "images" else corrupt_rows

    def stream(offset: int, counter: tf.Tensor) -> tf.Tensor:
        return tf.stack([tf.cast(seed + offset, tf.int64), counter])

    def fetch(i: tf.Tensor, idx: tf.Tensor) -> tuple[tuple[tf.Tensor, ...], tf.Tensor]:
        x = read(idx)
        if binarize == "dynamic":
            u = tf.random.stateless_uniform(tf.shape(x), seed=stream(DYNAMIC_BINARIZATION_OFFSET, i))
            x = tf.cast(u < x, tf.float32)
        if not augment:
            return (x,) * views, x
        partner = x if neighbours is None else near(x, idx, stream(NEIGHBOUR_OFFSET, i))
        return tuple(
            augmenter(partner if v else x, stream(AUGMENTATION_OFFSET + v, i), **augment) for v in range(views)
        ), x

    def near(x: tf.Tensor, idx: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        if neighbours.table is None:
            return partner_in_batch(x, neighbours.k, seed)
        return read(partner_positions(neighbours, idx, seed))

    ds = tf.data.Dataset.from_tensor_slices((counters, batches))
    if threads is None:
        return ds.map(fetch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.autotune.enabled = False
    return ds.map(fetch, num_parallel_calls=threads, deterministic=True).prefetch(2).with_options(options)
