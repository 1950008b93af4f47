"""predict.py's work: clusters, probabilities, latent means and scores of new data, written block by block."""

import numpy as np
import pytest

from conftest import TINY, compose_config
from vaemix.apps.evaluation import evaluate_run
from vaemix.apps.prediction import predict_run
from vaemix.apps.restore import restore_run
from vaemix.apps.toolkit import fit_task
from vaemix.apps.training import train
from vaemix.errors import VaemixError
from vaemix.infra.config import DataConfig, EvalOptions, PredictOptions
from vaemix.infra.images import load_images
from vaemix.maths.likelihoods import is_normalised, score_name


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tfds_dir):
    d = tmp_path_factory.mktemp("run")
    train(compose_config(*TINY, f"data.data_dir={tfds_dir}", "trainer.max_steps=3"), d)
    return d


def _csv(path):
    lines = path.read_text().splitlines()
    return lines[0].split(","), [line.split(",") for line in lines[1:]]


def test_the_whole_dataset_gets_a_row_each_in_csv_and_npz(run_dir, tfds_dir):
    data = DataConfig(name="mnist5k", data_dir=tfds_dir)
    result = predict_run(run_dir, data=data, options=PredictOptions(iwae_samples=3))
    header, rows = _csv(run_dir / "predictions" / "mnist5k.csv")
    assert result["num_examples"] == len(rows) == 5000 and 0 <= result["cluster_acc"] <= 1
    assert header == ["index", "cluster", "probability", "bernoulli_score", "label"]  # grey levels: not a likelihood
    arrays = np.load(run_dir / "predictions" / "mnist5k.npz")
    assert arrays["probabilities"].shape == (5000, 3) and arrays["latent_mean"].shape == (5000, 2)
    np.testing.assert_allclose(arrays["probabilities"].sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(arrays["cluster"], np.argmax(arrays["probabilities"], 1))
    assert [int(r[1]) for r in rows] == arrays["cluster"].tolist() and [int(r[0]) for r in rows] == list(range(5000))
    np.testing.assert_allclose([float(r[3]) for r in rows], arrays["bernoulli_score"], atol=1e-5)
    assert np.all(arrays["bernoulli_score"] < 0)


def test_clusters_agree_with_evaluate_on_the_same_split(run_dir):
    predicted = predict_run(run_dir, options=PredictOptions(split="test"))
    evaluated = evaluate_run(run_dir, options=EvalOptions(iwae_samples=0, pictures=False))
    for key in ("cluster_acc", "nmi", "ari", "components_used", "largest_share"):
        assert predicted[key] == pytest.approx(evaluated[key], abs=1e-12), key
    assert predicted["num_examples"] == evaluated["num_examples"] == 1000


def test_block_by_block_equals_one_block(run_dir, tmp_path):
    small = predict_run(run_dir, options=PredictOptions(split="test", iwae_samples=4, batch_size=20,
                                                        out=str(tmp_path / "small")))  # fmt: skip
    large = predict_run(run_dir, options=PredictOptions(split="test", iwae_samples=4, batch_size=1000,
                                                        out=str(tmp_path / "large")))  # fmt: skip
    a, b = np.load(tmp_path / "small.npz"), np.load(tmp_path / "large.npz")
    np.testing.assert_allclose(a["bernoulli_score"], b["bernoulli_score"], rtol=1e-5)
    np.testing.assert_allclose(a["latent_mean"], b["latent_mean"], atol=1e-5)
    assert small["cluster_acc"] == large["cluster_acc"]


def test_a_local_file_is_read_whole_in_its_order_without_labels(run_dir, tfds_dir, tmp_path):
    images = load_images(DataConfig(name="mnist5k", data_dir=tfds_dir)).test.values[:30]
    np.savez(tmp_path / "new_images.npz", x=images)
    result = predict_run(run_dir, data=DataConfig(name="local", images=str(tmp_path / "new_images.npz")))
    assert result["num_examples"] == 30 and "cluster_acc" not in result
    header, rows = _csv(run_dir / "predictions" / "new_images.csv")
    assert header == ["index", "cluster", "probability"] and len(rows) == 30
    _, vae, _, _ = restore_run(run_dir, (28, 28, 1))
    expected = vae.encoder(images.astype(np.float32) / 255.0).mean().numpy()
    np.testing.assert_allclose(np.load(run_dir / "predictions" / "new_images.npz")["latent_mean"], expected, atol=1e-5)


def test_binary_images_get_a_log_likelihood(run_dir, tfds_dir, tmp_path):
    data = DataConfig(name="mnist5k", data_dir=tfds_dir, binarize="static")
    predict_run(run_dir, data=data, options=PredictOptions(split="test", iwae_samples=2, out=str(tmp_path / "b")))
    assert _csv(tmp_path / "b.csv")[0] == ["index", "cluster", "probability", "log_likelihood", "label"]


def test_the_naming_rule():
    assert score_name("bernoulli", binary_data=True) == "log_likelihood"
    assert score_name("bernoulli", binary_data=False) == "bernoulli_score"
    assert score_name("gaussian", binary_data=False) == "log_likelihood"
    assert not is_normalised("bernoulli", False) and is_normalised("bernoulli", True)


def test_images_of_another_shape_are_a_clear_error(run_dir, tmp_path):
    np.savez(tmp_path / "small.npz", x=np.zeros((10, 8, 8), np.uint8))
    with pytest.raises(VaemixError, match=r"does not fit this model: .*shape \(8, 8, 1\), .* \(28, 28, 1\)"):
        predict_run(run_dir, data=DataConfig(name="local", images=str(tmp_path / "small.npz")))


def test_a_fitted_mixture_predicts_every_row(tmp_path):
    cfg = compose_config("task=gmm", "data=blobs", "data.n=300", "task.components=3")
    fit_task(cfg, tmp_path)
    result = predict_run(tmp_path)
    header, rows = _csv(tmp_path / "predictions" / "blobs.csv")
    assert header == ["index", "cluster", "probability", "log_likelihood", "label"] and len(rows) == 300
    assert result["cluster_acc"] > 0.9
    arrays = np.load(tmp_path / "predictions" / "blobs.npz")
    np.testing.assert_allclose(arrays["probabilities"].sum(1), 1.0, rtol=1e-9)


def test_a_fitted_mixture_reads_a_new_csv_as_its_own_and_takes_complete_rows(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 150)
    x = np.eye(3)[labels] * 8 + rng.normal(size=(150, 3))
    lines = ["a,b,c,kind"] + [f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},k{k}" for r, k in zip(x, labels, strict=True)]
    (tmp_path / "own.csv").write_text("\n".join(lines) + "\n")
    fit_task(compose_config("task=gmm", "data=table", f"data.path={tmp_path / 'own.csv'}", "data.label_column=kind",
                            "task.components=3"), tmp_path / "run")  # fmt: skip
    # Its columns in another order, the label column not named again: the fit's own, taken by name.
    moved = [",".join(np.array(line.split(","))[[3, 2, 0, 1]]) for line in lines]
    (tmp_path / "moved.csv").write_text("\n".join(moved) + "\n")
    results = [predict_run(tmp_path / "run", data=DataConfig(name="table", path=str(tmp_path / f"{n}.csv")))
               for n in ("own", "moved")]  # fmt: skip
    own, new = (np.load(r["predictions"].replace(".csv", ".npz"))["cluster"] for r in results)
    assert results[1]["cluster_acc"] == results[0]["cluster_acc"] > 0.9 and own.tolist() == new.tolist()
    (tmp_path / "gap.csv").write_text("\n".join(lines[:5] + ["1.0,,2.0,k0"] + lines[5:]) + "\n")
    with pytest.raises(VaemixError, match=r"values are missing \(the toolkit fits complete rows.*at row 4 column 1"):
        predict_run(tmp_path / "run", data=DataConfig(name="table", path=str(tmp_path / "gap.csv")))
