"""Data sources and the index-based input pipeline (order, resume, replica chunks)."""

import gzip
import struct

import numpy as np
import pytest
import tensorflow_datasets as tfds

from vaemix.errors import VaemixError
from vaemix.infra.config import DataConfig
from vaemix.infra.examples import Examples, Preprocessing
from vaemix.infra.images import load_images, to_uint8_images
from vaemix.infra.pipeline import index_batches, steps_per_epoch, train_dataset

IMAGES = Preprocessing("images")


def _write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_mnist5k_is_the_embedded_split(tfds_dir):
    data = load_images(DataConfig(name="mnist5k", data_dir=tfds_dir))
    assert data.train.values.shape == (4000, 28, 28, 1) and data.test.values.shape == (1000, 28, 28, 1)
    assert data.train.values.dtype == np.uint8 and data.train.values.max() == 255
    assert np.bincount(data.train.labels).tolist() == [400] * 10
    assert np.bincount(data.test.labels).tolist() == [100] * 10
    again = load_images(DataConfig(name="mnist5k", data_dir=tfds_dir))
    np.testing.assert_array_equal(data.test.values, again.test.values)


def test_tfds_name_goes_through_tfds(tmp_path):
    with tfds.testing.mock_data(num_examples=12):
        data = load_images(DataConfig(name="mnist", data_dir=str(tmp_path)))
    assert data.train.values.shape == (12, 28, 28, 1) and data.train.labels.shape == (12,)


def test_unknown_tfds_name_fails_fast_with_a_clear_message(tmp_path):
    with pytest.raises(VaemixError, match="'no_such_set' is not a TFDS dataset"):
        load_images(DataConfig(name="no_such_set", data_dir=str(tmp_path)))


def test_unprepared_tfds_dataset_without_download_fails_fast(tmp_path):
    with pytest.raises(VaemixError, match="not prepared .* data.download=false"):
        load_images(DataConfig(name="mnist", data_dir=str(tmp_path), download=False))


def test_local_idx_round_trip_with_held_out_fraction(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, size=(20, 4, 3)), rng.integers(0, 10, size=20)
    _write_idx(tmp_path / "img.gz", x)
    _write_idx(tmp_path / "lbl", y)
    data = load_images(
        DataConfig(name="local", images=str(tmp_path / "img.gz"), labels=str(tmp_path / "lbl"), test_fraction=0.25)
    )
    assert data.train.values.shape == (15, 4, 3, 1) and data.test.values.shape == (5, 4, 3, 1)
    pairs = {(im.tobytes(), lb) for im, lb in zip(x.astype(np.uint8), y, strict=True)}
    got = {(im[..., 0].tobytes(), lb) for im, lb in zip(data.train.values, data.train.labels, strict=True)}
    got |= {(im[..., 0].tobytes(), lb) for im, lb in zip(data.test.values, data.test.labels, strict=True)}
    assert got == pairs  # every image kept with its own label


def test_local_npz_with_unit_floats_and_labels(tmp_path):
    x = np.linspace(0, 1, 10 * 2 * 2 * 3).reshape(10, 2, 2, 3).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(10))
    data = load_images(DataConfig(name="local", images=str(tmp_path / "d.npz"), test_fraction=0.2))
    assert data.shape == (2, 2, 3) and data.train.labels is not None
    assert data.train.values.max() <= 255 and data.test.values.dtype == np.uint8


@pytest.mark.parametrize(
    "array,message",
    [
        (np.full((3, 2, 2), np.nan), "NaN or inf"),
        (np.full((3, 2, 2), 300.0), r"\[0, 1\] or \[0, 255\]"),
        (np.zeros((0, 2, 2)), "N > 0"),
        (np.zeros((3, 2)), r"\[N, H, W\]"),
    ],
)
def test_bad_pixels_are_rejected(array, message):
    with pytest.raises(VaemixError, match=message):
        to_uint8_images(array, "x.npz")


def test_missing_and_corrupt_local_files(tmp_path):
    with pytest.raises(VaemixError, match="does not exist"):
        load_images(DataConfig(name="local", images=str(tmp_path / "nope.gz")))
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    with pytest.raises(VaemixError, match="not a readable IDX"):
        load_images(DataConfig(name="local", images=str(tmp_path / "bad.gz")))


def test_static_binarisation_is_binary_and_seeded(tfds_dir):
    a = load_images(DataConfig(name="mnist5k", data_dir=tfds_dir, binarize="static"), seed=1)
    b = load_images(DataConfig(name="mnist5k", data_dir=tfds_dir, binarize="static"), seed=1)
    assert set(np.unique(a.train.values)) == {0, 255}
    np.testing.assert_array_equal(a.train.values, b.train.values)


def test_each_epoch_visits_every_full_batch_once_in_a_seeded_order():
    rows, counters = index_batches(10, 3, seed=0, start_step=0, total_steps=6)
    assert steps_per_epoch(10, 3) == 3 and rows.shape == (6, 3)
    assert len(set(rows[:3].ravel())) == 9 and len(set(rows[3:].ravel())) == 9
    assert not np.array_equal(rows[:3], rows[3:])  # reshuffled per epoch
    np.testing.assert_array_equal(counters, np.arange(6))


def test_resume_continues_the_same_order():
    full, full_c = index_batches(50, 8, seed=3, start_step=0, total_steps=20)
    tail, tail_c = index_batches(50, 8, seed=3, start_step=13, total_steps=20)
    np.testing.assert_array_equal(full[13:], tail)
    np.testing.assert_array_equal(full_c[13:], tail_c)


def test_replica_chunks_concatenate_to_the_single_device_batches():
    single, _ = index_batches(40, 8, seed=1, start_step=2, total_steps=9)
    chunks, counters = index_batches(40, 8, seed=1, start_step=2, total_steps=9, num_chunks=2)
    np.testing.assert_array_equal(chunks.reshape(-1, 8), single)
    second, _ = index_batches(40, 8, seed=1, start_step=2, total_steps=9, num_chunks=2, chunks=slice(1, 2))
    np.testing.assert_array_equal(second, single[:, 4:])
    assert len(set(counters)) == len(counters)


def test_dynamic_binarisation_depends_on_the_counter_only():
    images = np.full((4, 2, 2, 1), 128, np.uint8)
    batches = np.array([[0, 1], [2, 3]], np.int32)

    def run(counters: np.ndarray, threads: int | None = None) -> list[np.ndarray]:
        return [
            x.numpy()
            for _, x in train_dataset(Examples(images, IMAGES), batches, counters, "dynamic", 5, threads=threads)
        ]

    first, again = run(np.array([7, 8])), run(np.array([7, 8]), threads=1)  # nor on the pipeline's threads
    assert set(np.unique(first[0])) <= {0.0, 1.0}
    np.testing.assert_array_equal(first[1], again[1])
    np.testing.assert_array_equal(run(np.array([8, 9]))[0], first[1])


def test_augmented_views_differ_and_targets_stay_clean():
    images = np.random.default_rng(0).integers(0, 256, size=(4, 12, 12, 1), dtype=np.uint8)
    augment = dict(max_shift=0.2, max_rotation=20.0, max_zoom=0.1)
    ds = train_dataset(
        Examples(images, IMAGES), np.array([[0, 1, 2, 3]], np.int32), np.array([0]), "none", 1, augment, views=2
    )
    (a, b), x = next(iter(ds))
    np.testing.assert_allclose(x.numpy(), images / 255.0, atol=1e-6)
    assert a.shape == b.shape == x.shape and np.abs(a.numpy() - b.numpy()).mean() > 0.02
    (same,), _ = next(
        iter(train_dataset(Examples(images, IMAGES), np.array([[0, 1, 2, 3]], np.int32), np.array([0]), "none", 1))
    )
    np.testing.assert_array_equal(same.numpy(), x.numpy())
