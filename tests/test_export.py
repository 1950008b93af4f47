"""export.py's SavedModels load and run in a fresh process that never imports vaemix, and give the same
numbers as the in-process model."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY, compose_config
from vaemix.apps.export import export_run
from vaemix.apps.restore import restore_run
from vaemix.apps.toolkit import fit_task, restore_fit
from vaemix.apps.training import train
from vaemix.infra.rundir import record_command
from vaemix.maths.priors import component_log_posterior

# Runs in a fresh interpreter: loads the export with TensorFlow alone and writes what it computed.
LOADER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf

    export, inputs, out = sys.argv[1:]
    model = tf.saved_model.load(export)
    x = dict(np.load(inputs))
    results = {}
    for name, fn in model.signatures.items():
        args = {k: tf.constant(v) for k, v in x.items() if k.startswith(name + ":")}
        if args:
            outputs = fn(**{k.split(":")[1]: v for k, v in args.items()})
            results |= {f"{name}:{k}": v.numpy() for k, v in outputs.items()}
    try:
        model.signatures["serving_default"](**{k.split(":")[1]: tf.constant(v) for k, v in x.items()
                                               if k.startswith("wrong:")})
        error = "none"
    except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
        error = type(e).__name__ + ": " + str(e)
    np.savez(out, **results)
    print(json.dumps({"vaemix_imported": any(m.startswith("vaemix") for m in sys.modules),
                      "tfp_imported": any(m.startswith("tensorflow_probability") for m in sys.modules),
                      "signatures": sorted(model.signatures), "wrong_shape_error": error}))
""")


def _load_in_fresh_process(export: Path, inputs: dict, tmp_path: Path) -> tuple[dict, dict]:
    np.savez(tmp_path / "inputs.npz", **inputs)
    (tmp_path / "loader.py").write_text(LOADER)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, str(tmp_path / "loader.py"), str(export), str(tmp_path / "inputs.npz"),
                           str(tmp_path / "out.npz")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), dict(np.load(tmp_path / "out.npz"))


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory, tfds_dir):
    d = tmp_path_factory.mktemp("run")
    train(compose_config(*TINY, f"data.data_dir={tfds_dir}", "trainer.max_steps=3"), d)
    record_command(d, ["train.py", "hydra.run.dir=somewhere"])
    return d


def test_a_vae_export_needs_only_tensorflow_and_matches_the_model(vae_run, tmp_path):
    path = export_run(vae_run)
    assert path == vae_run / "export" / "3"
    images = np.random.default_rng(0).integers(0, 256, size=(9, 28, 28, 1)).astype(np.uint8)
    unit = images.astype(np.float32) / 255.0
    inputs = {"cluster:images": images, "cluster_float:images": unit, "encode:images": unit,
              "reconstruct:images": unit, "sample:component": np.int32(1), "sample:n": np.int32(4),
              "sample:seed": np.array([1, 2], np.int32), "bernoulli_score:images": unit[:3],
              "bernoulli_score:samples": np.int32(8), "wrong:images": np.zeros((2, 8, 8, 1), np.uint8)}  # fmt: skip
    report, out = _load_in_fresh_process(path, inputs, tmp_path)
    assert not report["vaemix_imported"] and not report["tfp_imported"]
    assert report["signatures"] == ["bernoulli_score", "cluster", "cluster_float", "encode", "reconstruct",
                                    "sample", "serving_default"]  # fmt: skip
    assert "InvalidArgumentError" in report["wrong_shape_error"] and "[?,28,28,1]" in report["wrong_shape_error"]
    _, vae, _, _ = restore_run(vae_run, (28, 28, 1))
    mean = vae.encoder(unit).mean()
    probs = tf.exp(component_log_posterior(vae.prior(), mean)).numpy()
    assert np.max(np.abs(out["cluster:probabilities"] - probs)) <= 1e-5
    assert np.max(np.abs(out["cluster:latent_mean"] - mean.numpy())) <= 1e-5
    np.testing.assert_array_equal(out["cluster:cluster"], np.argmax(probs, 1))
    assert np.max(np.abs(out["cluster_float:probabilities"] - out["cluster:probabilities"])) <= 1e-6  # uint8 = float
    np.testing.assert_allclose(out["reconstruct:reconstruction"], vae.decoder(mean).mean().numpy(), atol=1e-5)
    assert out["sample:samples"].shape == (4, 28, 28, 1) and set(np.unique(out["sample:samples"])) <= {0.0, 1.0}
    assert out["encode:scale_tril"].shape == (9, 2, 2) and out["bernoulli_score:bernoulli_score"].shape == (3,)


def test_the_model_card_says_what_the_model_takes_and_measured(vae_run):
    card = json.loads((export_run(vae_run) / "model_card.json").read_text())
    assert card["input"]["shape"] == [28, 28, 1] and card["components"] == 3 and card["latent_dim"] == 2
    assert card["step"] == 3 and card["checkpoint"] == "ckpt-3" and card["score"] == "bernoulli_score"
    assert card["trained_by"] == ["python train.py hydra.run.dir=somewhere"]
    assert set(card["metrics_on_test_split"]) >= {"elbo", "cluster_acc", "nmi", "ari"}
    labels = card["components_to_labels"]
    assert [c["component"] for c in labels] == [0, 1, 2] and sum(c["size"] for c in labels) == 4000
    assert all(c["purity"] is None or 0.1 <= c["purity"] <= 1 for c in labels)


def test_saved_model_cli_lists_the_signatures(vae_run):
    path = export_run(vae_run)
    cli = Path(sys.executable).parent / "saved_model_cli"
    done = subprocess.run([str(cli), "show", "--dir", str(path), "--all"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("serving_default", "cluster", "cluster_float", "encode", "reconstruct", "sample", "bernoulli_score"):
        assert f"signature_def['{name}']" in done.stdout


def test_an_mdn_exports_and_predicts_its_conditional_in_the_rows_units(tmp_path):
    """y in thousands (the MDN standardises within): the exported log p(y|x) and predict.py's scores are the
    model's, and the exported mixture's mean is y's, in y's units."""
    from vaemix.apps.prediction import predict_run

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 400)
    y = 1000 * (x**2 + 0.05 * rng.normal(size=400))
    np.savetxt(tmp_path / "pairs.csv", np.c_[x, y], delimiter=",", header="x,y", comments="")
    cfg = compose_config("task=mdn", "data=table", f"data.path={tmp_path / 'pairs.csv'}", "data.targets=[1]")
    fit_task(cfg, tmp_path / "run")
    model, _ = restore_fit(tmp_path / "run", cfg)
    rows = np.c_[x, y][:6].astype(np.float32)
    expected = model.predict(rows[:, :1]).log_prob(rows[:, 1:]).numpy()  # [6]
    inputs = {"log_prob:x": rows[:, :1], "log_prob:y": rows[:, 1:], "mixture:x": rows[:, :1]}
    _, out = _load_in_fresh_process(export_run(tmp_path / "run"), inputs, tmp_path)
    np.testing.assert_allclose(out["log_prob:log_prob"], expected, rtol=1e-5)
    mean = np.einsum("nk,nkd->nd", out["mixture:weights"], out["mixture:means"])[:, 0]  # [6]
    np.testing.assert_allclose(mean, 1000 * x[:6] ** 2, atol=100)  # the noise's deviation is 50
    scores = np.load(predict_run(tmp_path / "run")["predictions"].replace(".csv", ".npz"))["log_likelihood"]
    np.testing.assert_allclose(scores[:6], expected, rtol=1e-5)


def test_a_fitted_mixture_exports_its_density(tmp_path):
    cfg = compose_config("task=gmm", "data=blobs", "data.n=300", "task.components=3", "data.dims=2")
    fit_task(cfg, tmp_path / "run")
    path = export_run(tmp_path / "run")
    x = np.random.default_rng(1).normal(size=(6, 2)) * 3
    inputs = {"log_prob:x": x, "predict_proba:x": x, "sample:n": np.int32(5), "sample:seed": np.array([3, 4], np.int32)}
    report, out = _load_in_fresh_process(path, inputs, tmp_path)
    assert not report["vaemix_imported"] and report["signatures"] == ["log_prob", "predict_proba", "sample",
                                                                       "serving_default"]  # fmt: skip
    model, _ = restore_fit(tmp_path / "run", cfg)
    np.testing.assert_allclose(out["log_prob:log_prob"], model().log_prob(x).numpy(), rtol=1e-10)
    np.testing.assert_allclose(out["predict_proba:probabilities"].sum(1), 1.0, rtol=1e-10)
    assert out["sample:samples"].shape == (5, 2)
