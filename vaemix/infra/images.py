"""Image datasets: TFDS names, the embedded mnist5k, and local IDX/npz files.

Images are held in memory as ``uint8`` arrays ``[N, H, W, C]`` (the image datasets vaemix targets fit
easily); :mod:`vaemix.infra.pipeline` feeds them by index.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vaemix.errors import VaemixError
from vaemix.infra.arrays import existing_file, held_out_split, read_npz
from vaemix.infra.config import DataConfig
from vaemix.maths.streams import Stream


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


def _tfds_split(builder, split: str) -> tuple[np.ndarray, np.ndarray | None]:
    import tensorflow_datasets as tfds

    if "image" not in builder.info.features:
        raise VaemixError(f"dataset {builder.name!r} has no 'image' feature; vaemix needs image data")
    try:
        ds = builder.as_dataset(split=split)
    except (ValueError, KeyError) as e:
        raise VaemixError(f"dataset {builder.name!r} has no split {split!r} ({str(e)[:200]})") from None
    chunks = list(tfds.as_numpy(ds.batch(8192)))
    if not chunks:
        raise VaemixError(f"split {split!r} of dataset {builder.name!r} is empty")
    images = np.concatenate([c["image"] for c in chunks])
    if "label" not in chunks[0]:
        return images, None
    return images, np.concatenate([c["label"] for c in chunks]).astype(np.int64)


def load_tfds(name: str, train_split: str, test_split: str, data_dir: str | None, download: bool) -> ImageData:
    """Load a TFDS image dataset; fail within seconds if it cannot be had."""
    import tensorflow_datasets as tfds

    if name == "mnist5k":
        from vaemix.infra import mnist5k  # noqa: F401  (registers the builder)
    try:
        builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
    except tfds.core.registered.DatasetNotFoundError:
        raise VaemixError(
            f"data.name={name!r} is not a TFDS dataset; use a TFDS name (mnist, fashion_mnist, ...), "
            "mnist5k (embedded), or data=local for your own files"
        ) from None
    if not builder.is_prepared():
        if name != "mnist5k" and not download:
            raise VaemixError(
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
        raise VaemixError(
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
        raise VaemixError(f"{path}: not a readable IDX file ({e})") from None


def _read_array_file(path: str, key: str) -> np.ndarray:
    p = existing_file(path)
    return read_npz(p, key) if p.suffix == ".npz" else _read_idx(p)


def to_uint8_images(x: np.ndarray, source: str) -> np.ndarray:
    """Bring images to ``uint8 [N, H, W, C]``: grey ``[N, H, W]`` gains a channel, ``[0, 1]`` floats
    are scaled to 0..255; non-finite or out-of-range pixels are an error."""
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[0] == 0:
        raise VaemixError(f"{source}: images must be [N, H, W] or [N, H, W, C] with N > 0, got {x.shape}")
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.number):
        raise VaemixError(f"{source}: images must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise VaemixError(f"{source}: images contain NaN or inf pixels")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 255:
        raise VaemixError(f"{source}: pixel values must lie in [0, 1] or [0, 255], got [{lo:g}, {hi:g}]")
    scale = 255.0 if hi <= 1.0 else 1.0
    return np.round(x * scale).astype(np.uint8)


def _check_labels(y: np.ndarray, path: str, n: int) -> np.ndarray:
    y = y.reshape(-1)
    if y.shape[0] != n:
        raise VaemixError(f"{path}: {y.shape[0]} labels for {n} images")
    return y.astype(np.int64)


def _labels(path: str | None, key: str, n: int) -> np.ndarray | None:
    return None if path is None else _check_labels(_read_array_file(path, key), path, n)


def read_local(images: str, labels: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The images of an IDX or .npz file (``x`` and, in the same .npz, optional labels ``y``) in file order."""
    x = to_uint8_images(_read_array_file(images, "x"), images)
    if labels is None and images.endswith(".npz"):
        y = read_npz(existing_file(images), "y", optional=True)
        return x, None if y is None else _check_labels(y, images, x.shape[0])
    return x, _labels(labels, "y", x.shape[0])


def load_local(
    images: str,
    labels: str | None,
    test_images: str | None,
    test_labels: str | None,
    test_fraction: float,
) -> ImageData:
    """Images from IDX or .npz files; without test files, a fixed ``test_fraction`` is held out."""
    x, y = read_local(images, labels)
    if test_images is not None:
        xt, yt = read_local(test_images, test_labels)
        if xt.shape[1:] != x.shape[1:]:
            raise VaemixError(f"test images have shape {xt.shape[1:]}, train images {x.shape[1:]}")
    else:
        train, test = held_out_split(len(x), test_fraction)
        x, xt = x[train], x[test]
        y, yt = (None, None) if y is None else (y[train], y[test])
    return ImageData("local", x, y, xt, yt)


def binarized(data: ImageData, binarize: str, seed: int) -> ImageData:
    """``binarize="static"``: every pixel drawn once from Bernoulli(intensity) with ``seed``. The test
    split is binarised the same way for ``"dynamic"`` too, so held-out numbers are comparable."""
    if binarize == "none":
        return data
    rng = np.random.default_rng([seed, Stream.STATIC_BINARIZATION])
    train = _sample_binary(data.train_images, rng) if binarize == "static" else data.train_images
    return replace(data, train_images=train, test_images=_sample_binary(data.test_images, rng))


def _sample_binary(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(x.shape) * 255.0 < x, 255, 0).astype(np.uint8)


def load_images(d: DataConfig, seed: int = 0) -> ImageData:
    """The images ``d`` names (``local``, ``mnist5k`` or a TFDS name), binarised as it says."""
    if d.name == "local":
        assert d.images is not None
        data = load_local(d.images, d.labels, d.test_images, d.test_labels, d.test_fraction)
    else:
        data_dir = None if d.data_dir is None else os.path.expanduser(d.data_dir)
        data = load_tfds(d.name, d.train_split, d.test_split, data_dir, d.download)
        data = replace(
            data,
            train_images=to_uint8_images(data.train_images, d.name),
            test_images=to_uint8_images(data.test_images, d.name),
        )
    return binarized(data, d.binarize, seed)


def _joined(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    return None if a is None or b is None else np.concatenate([a, b])


def load_split(d: DataConfig, split: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """Images (and labels, if any) of one split (``train`` or ``test``, as training split them) or of
    ``all`` the data: a local file whole and in its own order, or a TFDS dataset's train and test splits
    one after the other. Binarised as the run's test split is."""
    if split != "all":
        data = load_images(d, seed)
        return (data.train_images, data.train_labels) if split == "train" else (data.test_images, data.test_labels)
    if d.name == "local":
        assert d.images is not None
        x, y = read_local(d.images, d.labels)
        if d.test_images is not None:
            xt, yt = read_local(d.test_images, d.test_labels)
            x, y = np.concatenate([x, xt]), _joined(y, yt)
    else:
        data = load_images(replace(d, binarize="none"), seed)
        x, y = np.concatenate([data.train_images, data.test_images]), _joined(data.train_labels, data.test_labels)
    if d.binarize != "none":
        x = _sample_binary(x, np.random.default_rng([seed, Stream.STATIC_BINARIZATION]))
    return x, y
