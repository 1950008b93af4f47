"""Datasets (TFDS, the embedded mnist5k, local IDX/npz files) and the ``tf.data`` input pipeline.

Images are held in memory as ``uint8`` arrays ``[N, H, W, C]`` (the image datasets vaemix targets fit
easily) and fed by index: each epoch is a seeded permutation, so a resumed run can start at any step
and the data order continues exactly where it stopped (distributed iterators cannot be checkpointed).
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from vaemix.errors import UserError


@dataclass(frozen=True)
class ImageData:
    """Train and test images as ``uint8`` ``[N, H, W, C]`` with optional ``int64`` labels ``[N]``."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray | None
    test_images: np.ndarray
    test_labels: np.ndarray | None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# Sources


def _tfds_split(builder, split: str) -> tuple[np.ndarray, np.ndarray | None]:
    import tensorflow_datasets as tfds

    if "image" not in builder.info.features:
        raise UserError(f"dataset {builder.name!r} has no 'image' feature; vaemix needs image data")
    try:
        ds = builder.as_dataset(split=split)
    except (ValueError, KeyError) as e:
        raise UserError(f"dataset {builder.name!r} has no split {split!r} ({str(e)[:200]})") from None
    chunks = list(tfds.as_numpy(ds.batch(8192)))
    if not chunks:
        raise UserError(f"split {split!r} of dataset {builder.name!r} is empty")
    images = np.concatenate([c["image"] for c in chunks])
    if "label" not in chunks[0]:
        return images, None
    return images, np.concatenate([c["label"] for c in chunks]).astype(np.int64)


def load_tfds(name: str, train_split: str, test_split: str, data_dir: str | None, download: bool) -> ImageData:
    """Load a TFDS image dataset; fail within seconds if it cannot be had."""
    import tensorflow_datasets as tfds

    if name == "mnist5k":
        from vaemix import mnist5k  # noqa: F401  (registers the builder)
    try:
        builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
    except tfds.core.registered.DatasetNotFoundError:
        raise UserError(
            f"data.name={name!r} is not a TFDS dataset; use a TFDS name (mnist, fashion_mnist, ...), "
            "mnist5k (embedded), or data=local for your own files"
        ) from None
    if not builder.is_prepared():
        if name != "mnist5k" and not download:
            raise UserError(
                f"dataset {name!r} is not prepared in {builder.data_dir} and data.download=false; "
                "prepare it with `tfds build` or allow data.download=true"
            )
        _download_and_prepare(builder)
    train = _tfds_split(builder, train_split)
    test = _tfds_split(builder, test_split)
    return ImageData(name, train[0], train[1], test[0], test[1])


def _download_and_prepare(builder) -> None:
    """TFDS retries a dead network for minutes; allow one try so an offline machine fails fast."""
    from tensorflow_datasets.core.download import downloader

    downloader.MAX_RETRIES = 1
    try:
        builder.download_and_prepare()
    except Exception as e:  # network, disk and checksum errors all mean "cannot be had"
        raise UserError(
            f"could not download dataset {builder.name!r} ({type(e).__name__}: {str(e)[:200]}); "
            "without network, use data=mnist5k or data=local"
        ) from None


def _read_idx(path: Path) -> np.ndarray:
    """An MNIST-format IDX file (raw or gzipped): magic, dims, then big-endian data."""
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
        zero, code, ndim = struct.unpack(">HBB", raw[:4])
        if zero != 0 or code not in dtypes or ndim == 0:
            raise ValueError("bad IDX magic number")
        shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
        data = np.frombuffer(raw, dtype=dtypes[code], offset=4 + 4 * ndim)
        return data.reshape(shape)
    except (OSError, ValueError, struct.error, EOFError, gzip.BadGzipFile) as e:
        raise UserError(f"{path}: not a readable IDX file ({e})") from None


def _read_array_file(path: str, key: str) -> np.ndarray:
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"data file {str(p)!r} does not exist")
    if p.suffix == ".npz":
        try:
            with np.load(p) as f:
                if key not in f:
                    raise UserError(f"{p}: no array {key!r} in the .npz (it has: {', '.join(f.files)})")
                return f[key]
        except (OSError, ValueError) as e:
            raise UserError(f"{p}: not a readable .npz file ({e})") from None
    return _read_idx(p)


def to_uint8_images(x: np.ndarray, source: str) -> np.ndarray:
    """Bring images to ``uint8 [N, H, W, C]``: grey ``[N, H, W]`` gains a channel, ``[0, 1]`` floats
    are scaled to 0..255; non-finite or out-of-range pixels are an error."""
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[0] == 0:
        raise UserError(f"{source}: images must be [N, H, W] or [N, H, W, C] with N > 0, got {x.shape}")
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.number):
        raise UserError(f"{source}: images must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise UserError(f"{source}: images contain NaN or inf pixels")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 255:
        raise UserError(f"{source}: pixel values must lie in [0, 1] or [0, 255], got [{lo:g}, {hi:g}]")
    scale = 255.0 if hi <= 1.0 else 1.0
    return np.round(x * scale).astype(np.uint8)


def _labels(path: str | None, key: str, n: int) -> np.ndarray | None:
    if path is None:
        return None
    y = _read_array_file(path, key).reshape(-1)
    if y.shape[0] != n:
        raise UserError(f"{path}: {y.shape[0]} labels for {n} images")
    return y.astype(np.int64)


def load_local(
    images: str,
    labels: str | None,
    test_images: str | None,
    test_labels: str | None,
    test_fraction: float,
) -> ImageData:
    """Images from IDX or .npz files (``x`` and, in the same file, optional ``y``)."""

    def read(img_path: str, lbl_path: str | None) -> tuple[np.ndarray, np.ndarray | None]:
        x = to_uint8_images(_read_array_file(img_path, "x"), img_path)
        if lbl_path is None and img_path.endswith(".npz"):
            with np.load(Path(img_path).expanduser()) as f:
                lbl_path = img_path if "y" in f else None
        return x, _labels(lbl_path, "y", x.shape[0])

    x, y = read(images, labels)
    if test_images is not None:
        xt, yt = read(test_images, test_labels)
        if xt.shape[1:] != x.shape[1:]:
            raise UserError(f"test images have shape {xt.shape[1:]}, train images {x.shape[1:]}")
    else:
        n_test = int(round(len(x) * test_fraction))
        if n_test < 1 or n_test >= len(x):
            raise UserError(f"{len(x)} images are too few to hold out data.test_fraction={test_fraction}")
        perm = np.random.default_rng(0).permutation(len(x))  # fixed: the split never changes
        test, train = perm[:n_test], perm[n_test:]
        x, xt = x[train], x[test]
        y, yt = (None, None) if y is None else (y[train], y[test])
    return ImageData("local", x, y, xt, yt)


def load(
    name: str,
    *,
    binarize: str = "none",
    seed: int = 0,
    data_dir: str | None = None,
    download: bool = True,
    train_split: str = "train",
    test_split: str = "test",
    images: str | None = None,
    labels: str | None = None,
    test_images: str | None = None,
    test_labels: str | None = None,
    test_fraction: float = 0.2,
) -> ImageData:
    """Load a dataset by name (``local``, ``mnist5k`` or a TFDS name) and apply static binarisation.

    ``binarize="static"`` draws every pixel once from Bernoulli(intensity) with ``seed``; the test
    split is binarised the same way for ``"dynamic"`` too, so held-out numbers are comparable.
    """
    if name == "local":
        assert images is not None
        data = load_local(images, labels, test_images, test_labels, test_fraction)
    else:
        data = load_tfds(name, train_split, test_split, data_dir, download)
        data = ImageData(
            name,
            to_uint8_images(data.train_images, name),
            data.train_labels,
            to_uint8_images(data.test_images, name),
            data.test_labels,
        )
    rng = np.random.default_rng([seed, 1])
    if binarize == "static":
        data = ImageData(
            name,
            _sample_binary(data.train_images, rng),
            data.train_labels,
            data.test_images,
            data.test_labels,
        )
    if binarize in ("static", "dynamic"):
        data = ImageData(
            name,
            data.train_images,
            data.train_labels,
            _sample_binary(data.test_images, rng),
            data.test_labels,
        )
    return data


def _sample_binary(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(x.shape) * 255.0 < x, 255, 0).astype(np.uint8)


def data_kwargs(cfg) -> dict:
    """The keyword arguments of :func:`load` from a ``DataConfig``."""
    return dict(
        binarize=cfg.binarize,
        data_dir=None if cfg.data_dir is None else os.path.expanduser(cfg.data_dir),
        download=cfg.download,
        train_split=cfg.train_split,
        test_split=cfg.test_split,
        images=cfg.images,
        labels=cfg.labels,
        test_images=cfg.test_images,
        test_labels=cfg.test_labels,
        test_fraction=cfg.test_fraction,
    )


# ----------------------------------------------------------------------------------------------
# Input pipeline


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
    """Full global batches per epoch (the remainder is dropped so every replica gets equal work)."""
    return num_examples // global_batch_size


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The example order of one epoch: a function of (seed, epoch) only, so resumes reproduce it."""
    return np.random.default_rng([seed, 2, epoch]).permutation(num_examples)


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


def to_unit(images: tf.Tensor) -> tf.Tensor:
    """``uint8`` pixels to ``float32`` in ``[0, 1]``."""
    return tf.cast(images, tf.float32) / 255.0


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


def train_dataset(
    images: np.ndarray,
    batches: np.ndarray,
    counters: np.ndarray,
    binarize: str,
    seed: int,
    augment: dict[str, float] | None = None,
    views: int = 1,
    threads: int | None = None,
) -> tf.data.Dataset:
    """``(views, targets)`` batches for the index rows of ``batches`` (see :func:`index_batches`):
    ``targets`` ``float32 [b, H, W, C]`` are the images the decoder must explain, ``views`` a tuple of
    ``views`` tensors like it for the encoder to see: the targets themselves, or independent
    :func:`random_affine` views with ``augment`` (keys ``max_shift``, ``max_rotation``, ``max_zoom``),
    which teach the encoder that pose is not identity. Dynamic binarisation and augmentation draw from
    stateless seeds ``(seed, counter)``, so a resumed run draws what the uninterrupted run would have.
    ``threads`` caps the pipeline at that many threads of its own (None: tf.data's autotuning).
    """
    pixels = tf.constant(images)  # [N, H, W, C] uint8, kept on the host

    def fetch(i: tf.Tensor, idx: tf.Tensor) -> tuple[tuple[tf.Tensor, ...], tf.Tensor]:
        x = to_unit(tf.gather(pixels, idx))
        if binarize == "dynamic":
            u = tf.random.stateless_uniform(tf.shape(x), seed=tf.stack([tf.cast(seed, tf.int64), i]))
            x = tf.cast(u < x, tf.float32)
        if not augment:
            return (x,) * views, x
        return tuple(
            random_affine(x, tf.stack([tf.cast(seed, tf.int64) + 17 + v, i]), **augment) for v in range(views)
        ), x

    ds = tf.data.Dataset.from_tensor_slices((counters, batches))
    if threads is None:
        return ds.map(fetch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.autotune.enabled = False
    return ds.map(fetch, num_parallel_calls=threads, deterministic=True).prefetch(2).with_options(options)


def eval_dataset(images: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """The whole split in order, ``float32 [<=batch_size, H, W, C]`` batches (last one partial)."""
    ds = tf.data.Dataset.from_tensor_slices(images).batch(batch_size)
    return ds.map(to_unit, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
