"""Image folders, colour images, and the discretised logistic likelihood with bits per dimension."""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image
from scipy.stats import logistic

from conftest import compose_config
from vaemix.apps.evaluation import evaluate_run
from vaemix.apps.resolve import resolve
from vaemix.apps.training import train
from vaemix.errors import VaemixError
from vaemix.infra.arrays import held_out_split
from vaemix.infra.config import DataConfig, EvalOptions
from vaemix.infra.datasets import load_dataset, load_examples
from vaemix.infra.images import load_local, read_folder
from vaemix.maths.likelihoods import DiscretizedLogistic, bits_per_dim


def _save(path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_a_folder_of_subfolders_gives_labels_and_colour(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        for i in range(3):
            _save(tmp_path / label / f"{i}.png", rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8))
    _save(tmp_path / "cats" / "grey.png", np.full((6, 5), 7, np.uint8))  # one grey image among colour ones
    x, y = read_folder(tmp_path)
    assert x.shape == (7, 6, 5, 3) and x.dtype == np.uint8 and y.tolist() == [0, 0, 0, 0, 1, 1, 1]
    np.testing.assert_array_equal(x[3], 7)  # grey.png sorts after 0..2.png, as an RGB image


def test_grey_images_keep_one_channel_and_loose_files_have_no_labels(tmp_path):
    for i in range(2):
        _save(tmp_path / f"{i}.jpg", np.full((4, 4), 100 * i, np.uint8))
    x, y = read_folder(tmp_path)
    assert x.shape == (2, 4, 4, 1) and y is None


def test_an_npz_of_images_may_name_its_labels(tmp_path):
    x = np.zeros((6, 4, 4), np.uint8)
    np.savez(tmp_path / "named.npz", x=x, y=np.array(["emu", "cat", "dog", "cat", "emu", "dog"]))
    (_, train_y), (_, test_y) = load_local(str(tmp_path / "named.npz"), None, None, None, 0.5)
    train, test = held_out_split(6, 0.5)
    codes = np.array([2, 0, 1, 0, 2, 1])  # cat, dog, emu numbered in sorted order
    assert train_y.tolist() == codes[train].tolist() and test_y.tolist() == codes[test].tolist()


def test_an_npz_of_images_under_other_names(tmp_path):
    x = np.arange(6 * 16, dtype=np.uint8).reshape(6, 4, 4)
    np.savez(tmp_path / "scan.npz", images=x, masks=x, digit=np.arange(6))
    (train_x, train_y), _ = load_local(str(tmp_path / "scan.npz"), None, None, None, 0.5, keys=("images", "digit"))
    train, _ = held_out_split(6, 0.5)
    assert train_x[..., 0].tolist() == x[train].tolist() and train_y.tolist() == train.tolist()


def test_16_bit_grey_is_scaled_photos_stand_upright_and_hidden_files_are_skipped(tmp_path):
    _save(tmp_path / "deep" / "a.png", np.linspace(0, 65535, 16, dtype=np.uint16).reshape(4, 4))  # mode I;16
    (tmp_path / "deep" / "._a.png").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    x, _ = read_folder(tmp_path / "deep")
    assert x.shape == (1, 4, 4, 1) and x[0, :, :, 0].ravel().tolist() == list(range(0, 256, 17))  # not clipped
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: shown turned 90 degrees clockwise, as a phone writes it
    (tmp_path / "photo").mkdir()
    Image.fromarray(np.zeros((2, 3), np.uint8)).save(tmp_path / "photo" / "r.jpg", exif=exif)
    assert read_folder(tmp_path / "photo")[0].shape == (1, 3, 2, 1)


def test_tiff_16_bit_and_float_and_webp_files_are_images_too(tmp_path):
    _save(tmp_path / "scans" / "a.tif", np.linspace(0, 65535, 16, dtype=np.uint16).reshape(4, 4))  # 16 bits
    x, _ = read_folder(tmp_path / "scans")
    assert x.shape == (1, 4, 4, 1) and x[0, :, :, 0].ravel().tolist() == list(range(0, 256, 17))
    _save(tmp_path / "float" / "a.tif", np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4))  # mode F, 0..1
    _save(tmp_path / "float" / "b.tif", np.full((4, 4), 200.0, np.float32))  # 0..255
    x, _ = read_folder(tmp_path / "float")
    assert x[0, :, :, 0].ravel().tolist() == list(range(0, 256, 17)) and (x[1] == 200).all()  # not black
    _save(tmp_path / "float" / "c.tif", np.full((4, 4), -3.0, np.float32))
    with pytest.raises(VaemixError, match=r"c.tif \(float pixels from -3 to -3, neither 0..1 nor 0..255"):
        read_folder(tmp_path / "float")
    (tmp_path / "web").mkdir()
    Image.fromarray(np.full((4, 4, 3), [90, 20, 200], np.uint8)).save(tmp_path / "web" / "a.webp", lossless=True)
    x, _ = read_folder(tmp_path / "web")
    assert x.shape == (1, 4, 4, 3) and x[0].reshape(-1, 3).tolist() == [[90, 20, 200]] * 16


def test_rgb_files_of_grey_content_are_grey_and_a_colour_model_takes_grey_images(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(3, 8, 8), dtype=np.uint8)
    (tmp_path / "web").mkdir()
    for i in range(3):  # lossy WebP is decoded as RGB whose channels differ by up to 1 where the file was grey
        Image.fromarray(grey[i]).save(tmp_path / "web" / f"{i}.webp", quality=80)
        _save(tmp_path / "png" / f"{i}.png", np.repeat(grey[i][..., None], 3, axis=-1))  # RGB of equal channels
    x, _ = read_folder(tmp_path / "web")
    assert x.shape == (3, 8, 8, 1)
    decoded = np.asarray(Image.open(tmp_path / "web" / "0.webp").convert("L"))
    np.testing.assert_array_equal(x[0, ..., 0], decoded)
    x, _ = read_folder(tmp_path / "png")
    assert x.shape == (3, 8, 8, 1) and x[..., 0].tolist() == grey.tolist()
    record = {"kind": "images", "shape": [8, 8, 3], "image_size": None}  # a model of colour images
    new = load_examples(DataConfig(name="local", images=str(tmp_path / "png")), "all", record)
    assert new.shape == (8, 8, 3) and new.values.tolist() == np.repeat(grey[..., None], 3, axis=-1).tolist()
    _save(tmp_path / "colour" / "a.png", rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8))
    record["shape"] = [8, 8, 1]  # colour images for a model of grey ones stay an error
    with pytest.raises(VaemixError, match=r"its images have shape \(8, 8, 3\), the model was trained on .*\(8, 8, 1\)"):
        load_examples(DataConfig(name="local", images=str(tmp_path / "colour")), "all", record)


def test_camera_photos_are_resized_as_they_are_read_not_held_at_full_size(tmp_path):
    for i in range(8):  # 12 megapixels each: 36 MB apiece decoded
        Image.fromarray(np.full((3000, 4000, 3), [20 * i, 90, 200], np.uint8)).save(tmp_path / f"{i}.jpg")
    # The peak resident memory of this process's own address space (VmHWM; ru_maxrss would count the parent's).
    peak = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])"
    script = (
        "import sys; from pathlib import Path; from vaemix.infra.images import read_folder; "
        f"before = {peak}; x, _ = read_folder(Path(sys.argv[1]), [16, 16]); print(x.shape, {peak} - before)"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True)
    shape, grown_kb = out.stdout.rsplit(")", 1)
    assert shape == "(8, 16, 16, 3" and int(grown_kb) < 100_000, out.stdout  # all eight at full size: 288 MB


def test_a_small_folder_trains_with_the_default_batch_and_new_files_are_resized_as_training_did(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(30):
        _save(tmp_path / "own" / f"{i}.png", rng.integers(0, 256, size=(10 + i % 3, 12, 3), dtype=np.uint8))
    cfg = compose_config("data=local", f"data.images={tmp_path / 'own'}", "data.image_size=[8,8]", "model=conv")
    data, record = load_dataset(cfg.data)
    assert resolve(cfg, data).trainer.batch_size == 24 == len(data.train)  # not 256, an error for 24 images
    assert record["image_size"] == [8, 8]
    for i in range(3):
        _save(tmp_path / "new" / f"{i}.png", rng.integers(0, 256, size=(20, 30 + i, 3), dtype=np.uint8))
    new = load_examples(DataConfig(name="local", images=str(tmp_path / "new")), "all", record)
    assert len(new) == 3 and new.shape == (8, 8, 3)  # no data.image_size given: the run's


def test_sizes_must_agree_unless_image_size_resizes(tmp_path):
    _save(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    _save(tmp_path / "b.png", np.zeros((4, 6), np.uint8))
    with pytest.raises(VaemixError, match=r"images have 2 sizes .*set data.image_size=\[H,W\]"):
        read_folder(tmp_path)
    x, _ = read_folder(tmp_path, image_size=[5, 7])
    assert x.shape == (2, 5, 7, 1)


def test_unreadable_files_are_named_in_one_line(tmp_path):
    _save(tmp_path / "good.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(VaemixError, match=r"1 file\(s\) of .* could not be read as images: broken.png"):
        read_folder(tmp_path)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(VaemixError, match=r"no image files \(.png, .jpg, .jpeg, .bmp, .gif, .tif, .tiff, .webp\)"):
        read_folder(tmp_path / "nothing")


def test_the_discretised_logistic_is_a_distribution_over_256_values():
    loc = tf.constant([[0.1], [0.5], [0.97]])
    scale = tf.constant([[0.02], [0.3], [0.0001]])
    values = tf.constant(np.arange(256)[None, :] / 255.0, tf.float32)  # [1, 256]
    probs = tf.exp(DiscretizedLogistic(loc, scale).log_prob(values)).numpy()  # [3, 256]
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-4)
    f = lambda v, i: logistic.cdf(v, loc=loc.numpy()[i, 0], scale=scale.numpy()[i, 0])  # noqa: E731
    np.testing.assert_allclose(probs[1, 0], f(0.5 / 255, 1), rtol=1e-4)  # the edge bins take the tails
    np.testing.assert_allclose(probs[1, 255], 1 - f(254.5 / 255, 1), rtol=1e-4)
    np.testing.assert_allclose(probs[0, 30], f(30.5 / 255, 0) - f(29.5 / 255, 0), rtol=1e-4)
    assert probs[2, 247] > 0.99  # a scale far below a bin: all the mass in loc's bin (0.97 * 255 = 247.4)
    assert bits_per_dim(np.log(2) * 3072, 3072) == pytest.approx(1.0)


def test_colour_images_through_the_conv_net_and_the_logistic(tiny_config, tmp_path):
    overrides = ["data=cifar10", "model=conv", "model.filters=[4]", "model.conv_dense=8", "model.likelihood=logistic",
                 "trainer.max_steps=2", "trainer.batch_size=16"]  # fmt: skip
    with tfds.testing.mock_data(num_examples=40):
        m = train(tiny_config(*overrides), tmp_path)
        metrics = evaluate_run(tmp_path, options=EvalOptions(iwae_samples=4, pictures=True))
    assert m["step"] == 2 and np.isfinite(m["elbo"])
    assert metrics["bits_per_dim"] == pytest.approx(metrics["iwae_nll"] / (32 * 32 * 3 * np.log(2)))
    assert metrics["bits_per_dim"] > 0 and metrics["iwae_nll"] <= -metrics["elbo"] + 1e-3  # a bound, in bits
    assert (tmp_path / "eval" / "samples.png").exists()


def test_a_local_colour_npz_with_the_recipes_augmentation(tiny_config, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "colour.npz", x=rng.integers(0, 256, size=(60, 10, 12, 3), dtype=np.uint8))
    overrides = ["data=local", f"data.images={tmp_path / 'colour.npz'}", "model=conv", "model.filters=[4]",
                 "model.conv_dense=8", "data.augment=true", "trainer.contrastive=1", "trainer.max_steps=2",
                 "trainer.batch_size=16"]  # fmt: skip
    m = train(tiny_config(*overrides), tmp_path / "run")
    assert m["step"] == 2 and np.isfinite(m["elbo"])
