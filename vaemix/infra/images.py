"""Image datasets: TFDS names, the embedded mnist5k, and local IDX/npz files.

Images are held in memory as ``uint8`` arrays ``[N, H, W, C]`` (the image datasets vaemix targets fit
easily); :mod:`vaemix.infra.pipeline` feeds them by index.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from vaemix.errors import VaemixError
from vaemix.infra.arrays import array_labels, existing_file, held_out_split, read_npz
from vaemix.infra.config import DataConfig
from vaemix.infra.examples import Dataset, Examples, Preprocessing
from vaemix.maths.streams import Stream

Split = tuple[np.ndarray, np.ndarray | None]  # uint8 images [N, H, W, C] and int64 labels [N] (or None)


def image_dataset(name: str, train: Split, test: Split) -> Dataset:
    pre = Preprocessing("images")
    return Dataset(name, Examples(train[0], pre, labels=train[1]), Examples(test[0], pre, labels=test[1]))


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


def load_tfds(
    name: str, train_split: str, test_split: str, data_dir: str | None, download: bool
) -> tuple[Split, Split]:
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
    return _tfds_split(builder, train_split), _tfds_split(builder, test_split)


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


def _read_array_file(path: str, key: str, setting: str) -> np.ndarray:
    p = existing_file(path)
    return read_npz(p, key, sole=True, setting=setting) if p.suffix == ".npz" else _read_idx(p)


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
    return array_labels(Path(path), y)[0]


def _labels(path: str | None, key: str, n: int) -> np.ndarray | None:
    return None if path is None else _check_labels(_read_array_file(path, key, "data.y_key"), path, n)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _eight_bit(im):
    """A 16-bit grey image (a PNG's ``I;16`` or ``I``) as 8 bits, 0..65535 to 0..255: PIL's own conversion
    would clip every value above 255 to white. A float one (a TIFF's ``F``) from 0..1, or 0..255, to
    0..255: PIL's would turn 0..1 black. Other images as they are."""
    from PIL import Image

    if im.mode.startswith("I;16") or im.mode == "I":
        return Image.fromarray(np.round(np.asarray(im, np.float64) / 257.0).clip(0, 255).astype(np.uint8), "L")
    if im.mode == "F":
        v = np.asarray(im, np.float64)
        low, high = float(v.min()), float(v.max())
        if not (np.isfinite(low) and np.isfinite(high) and low >= 0 and high <= 255):
            raise VaemixError(f"float pixels from {low:g} to {high:g}, neither 0..1 nor 0..255; save 8 or 16 bits")
        return Image.fromarray(np.round(v * (255.0 if high <= 1 else 1.0)).astype(np.uint8), "L")
    return im


def _open_image(path: Path, image_size: list[int] | None):
    """One file as an ``L`` (grey, also when stored as RGB of equal channels) or ``RGB`` image, upright as a
    viewer shows it, resized to ``image_size`` as soon as it is read: a folder of camera photos must not be
    held at full size."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        if image_size:  # a JPEG decodes at 1/2 .. 1/8 scale when that still covers the size asked for
            im.draft(im.mode, (max(image_size), max(image_size)))
        im.load()
        ImageOps.exif_transpose(im, in_place=True)
        im = _eight_bit(im)
        im = im.convert("L" if im.mode in _GREY_MODES else "RGB")  # a new image: the file's is released
    im = im.resize((image_size[1], image_size[0]), Image.BILINEAR) if image_size else im
    return im.convert("L") if im.mode == "RGB" and _grey_content(im) else im


def _grey_content(im) -> bool:
    """Whether an RGB image is grey: a WebP is always decoded as RGB, and a lossy one's channels then differ
    by up to 1 where the file was grey."""
    rgb = np.asarray(im, np.int16)  # [H, W, 3]
    return int(np.abs(rgb - rgb[..., :1]).max()) <= 1


def _open_images(files: list[Path], image_size: list[int] | None) -> list:
    """The files as images (see :func:`_open_image`), or one error line naming every file that could not
    be read."""
    from PIL import UnidentifiedImageError

    opened, bad = [], []
    for path in files:
        try:
            opened.append(_open_image(path, image_size))
        except (OSError, UnidentifiedImageError, ValueError) as e:
            bad.append(f"{path.name} ({e if isinstance(e, VaemixError) else type(e).__name__})")
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise VaemixError(f"{len(bad)} file(s) of {files[0].parent} could not be read as images: {shown}")
    return opened


def read_folder(folder: Path, image_size: list[int] | None = None) -> Split:
    """The image files of ``folder`` (PNG, JPEG, BMP, GIF, TIFF, WebP) as ``uint8 [N, H, W, C]`` (C=3 if
    any is in colour, else 1), sorted by path; labels from the names of the subfolders they sit in (when
    every file is in one). Images of other sizes are resized to ``image_size`` ``[H, W]``; without it,
    differing sizes are an error."""
    files = sorted(  # hidden files are no one's images (macOS writes "._name.png" beside each)
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise VaemixError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it or its subfolders")
    images = _open_images(files, image_size)
    colour = any(im.mode == "RGB" for im in images)
    images = [im.convert("RGB") for im in images] if colour else images
    sizes = sorted({im.size for im in images})  # (W, H)
    if len(sizes) > 1:
        raise VaemixError(
            f"{folder}: images have {len(sizes)} sizes ({sizes[0][1]}x{sizes[0][0]} to {sizes[-1][1]}x{sizes[-1][0]}); "
            "set data.image_size=[H,W] to resize them"
        )
    x = np.stack([np.asarray(im, np.uint8) for im in images])
    x = x if colour else x[..., None]
    parents = [p.parent for p in files]
    if any(parent == folder for parent in parents):
        return x, None
    names = sorted({p.relative_to(folder).parts[0] for p in files})
    return x, np.array([names.index(p.relative_to(folder).parts[0]) for p in files], np.int64)


def read_local(
    images: str, labels: str | None, image_size: list[int] | None = None, keys: tuple[str, str] = ("x", "y")
) -> Split:
    """The images of an IDX or .npz file (array ``keys[0]`` and, in the same .npz, labels ``keys[1]``,
    optional while ``y``) in file order, or of a folder of PNG/JPEG files (labels from its subfolders' names)."""
    if Path(images).expanduser().is_dir():
        return read_folder(Path(images).expanduser(), image_size)
    x_key, y_key = keys
    x = to_uint8_images(_read_array_file(images, x_key, "data.x_key"), images)
    if labels is None and images.endswith(".npz"):
        y = read_npz(existing_file(images), y_key, optional=y_key == "y", setting="data.y_key")
        return x, None if y is None else _check_labels(y, images, x.shape[0])
    return x, _labels(labels, y_key, x.shape[0])


def load_local(
    images: str,
    labels: str | None,
    test_images: str | None,
    test_labels: str | None,
    test_fraction: float,
    image_size: list[int] | None = None,
    keys: tuple[str, str] = ("x", "y"),
) -> tuple[Split, Split]:
    """Images from IDX or .npz files or folders; without test files, a fixed ``test_fraction`` is held out."""
    x, y = read_local(images, labels, image_size, keys)
    if test_images is not None:
        xt, yt = read_local(test_images, test_labels, image_size, keys)
        if xt.shape[1:] != x.shape[1:]:
            raise VaemixError(f"test images have shape {xt.shape[1:]}, train images {x.shape[1:]}")
        return (x, y), (xt, yt)
    train, test = held_out_split(len(x), test_fraction)
    return (x[train], None if y is None else y[train]), (x[test], None if y is None else y[test])


def binarized(train: Split, test: Split, binarize: str, seed: int) -> tuple[Split, Split]:
    """``binarize="static"``: every pixel drawn once from Bernoulli(intensity) with ``seed``. The test
    split is binarised the same way for ``"dynamic"`` too, so held-out numbers are comparable."""
    if binarize == "none":
        return train, test
    rng = np.random.default_rng([seed, Stream.STATIC_BINARIZATION])
    train_images = _sample_binary(train[0], rng) if binarize == "static" else train[0]
    return (train_images, train[1]), (_sample_binary(test[0], rng), test[1])


def _sample_binary(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(x.shape) * 255.0 < x, 255, 0).astype(np.uint8)


def _splits(d: DataConfig) -> tuple[Split, Split]:
    if d.name == "local":
        assert d.images is not None
        keys = (d.x_key, d.y_key)
        return load_local(d.images, d.labels, d.test_images, d.test_labels, d.test_fraction, d.image_size, keys)
    data_dir = None if d.data_dir is None else os.path.expanduser(d.data_dir)
    (x, y), (xt, yt) = load_tfds(d.name, d.train_split, d.test_split, data_dir, d.download)
    return (to_uint8_images(x, d.name), y), (to_uint8_images(xt, d.name), yt)


def load_images(d: DataConfig, seed: int = 0) -> Dataset:
    """The images ``d`` names (``local``, ``mnist5k`` or a TFDS name), binarised as it says."""
    train, test = binarized(*_splits(d), d.binarize, seed)
    return image_dataset(d.name, train, test)


def _joined(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    return None if a is None or b is None else np.concatenate([a, b])


def load_image_split(d: DataConfig, split: str, seed: int = 0) -> Examples:
    """One split (``train`` or ``test``, as training split them) or ``all`` the data: a local file whole
    and in its own order, or a TFDS dataset's train and test splits one after the other; binarised as the
    run's test split is."""
    if split != "all":
        data = load_images(d, seed)
        return data.train if split == "train" else data.test
    if d.name == "local" and not d.test_images:
        assert d.images is not None
        x, y = read_local(d.images, d.labels, d.image_size, (d.x_key, d.y_key))
    else:
        (x, y), (xt, yt) = _splits(d)
        x, y = np.concatenate([x, xt]), _joined(y, yt)
    if d.binarize != "none":
        x = _sample_binary(x, np.random.default_rng([seed, Stream.STATIC_BINARIZATION]))
    return Examples(x, Preprocessing("images"), labels=y)
