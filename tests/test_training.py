"""End-to-end training in-process on tiny models: files written, exact resume, replicas agree."""

import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from vaemix.apps.steps import Jit, use_jit
from vaemix.apps.training import train
from vaemix.errors import VaemixError


def _scalar_tags(logdir) -> set[str]:
    tags = set()
    for path in logdir.glob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            tags |= {v.tag for v in event.summary.value}
    return tags


def _checkpoint_values(run_dir) -> dict[str, np.ndarray]:
    path = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    return {
        name: reader.get_tensor(name)
        for name, _ in tf.train.list_variables(path)
        if "VARIABLE_VALUE" in name and not name.startswith("save_counter")
    }


def test_two_steps_write_checkpoint_events_and_metrics(tiny_config, tmp_path):
    metrics = train(tiny_config("trainer.max_steps=2"), tmp_path)
    assert metrics["step"] == 2 and np.isfinite(metrics["elbo"]) and metrics["elbo"] < 0
    assert (tmp_path / "checkpoints" / "ckpt-2.index").exists()
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["step"] == 2 and saved["elbo"] == pytest.approx(metrics["elbo"])
    tags = _scalar_tags(tmp_path / "tensorboard")
    assert {"train/loss", "train/reconstruction", "train/kl", "prior/weights_entropy", "eval/elbo"} <= tags


def test_resume_continues_step_counter_and_matches_uninterrupted_run(tiny_config, tmp_path):
    train(tiny_config("trainer.max_steps=3"), tmp_path / "resumed")
    resumed = train(tiny_config("trainer.max_steps=100"), tmp_path / "resumed")  # 2 epochs of 80 steps
    straight = train(tiny_config("trainer.max_steps=100"), tmp_path / "straight")
    assert resumed["step"] == straight["step"] == 100
    a, b = _checkpoint_values(tmp_path / "resumed"), _checkpoint_values(tmp_path / "straight")
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-5, err_msg=name)
    assert resumed["elbo"] == pytest.approx(straight["elbo"], abs=1e-3)


def test_a_resumed_run_trains_at_the_learning_rate_it_is_given(tiny_config, tmp_path):
    """The divergence error advises a lower trainer.lr; the checkpoint's own rate must not win."""
    train(tiny_config("trainer.max_steps=2", "trainer.pretrain_epochs=1"), tmp_path)
    train(tiny_config("trainer.max_steps=4", "trainer.pretrain_epochs=1", "trainer.lr=1e-4"), tmp_path)
    rates = {k: float(v) for k, v in _checkpoint_values(tmp_path).items() if "learning_rate" in k}
    assert rates and all(r == pytest.approx(1e-4) for r in rates.values())


def test_rerunning_a_finished_run_trains_no_further(tiny_config, tmp_path):
    train(tiny_config("trainer.max_steps=2"), tmp_path)
    assert train(tiny_config("trainer.max_steps=2"), tmp_path)["step"] == 2


def test_mirrored_two_cpus_gives_the_same_update_as_one_device(tiny_config, tmp_path):
    train(tiny_config("trainer.max_steps=1", "trainer.kl_samples=2"), tmp_path / "one")
    train(
        tiny_config("trainer.max_steps=1", "trainer.kl_samples=2", "strategy=mirrored", "strategy.devices=2"),
        tmp_path / "two",
    )
    one, two = _checkpoint_values(tmp_path / "one"), _checkpoint_values(tmp_path / "two")
    assert one.keys() == two.keys()
    worst = max(float(np.max(np.abs(one[k] - two[k]))) for k in one)
    assert worst <= 1e-6


@pytest.mark.parametrize(
    "model,jit", [(("model.architecture=mlp",), "true"), (("model=conv", "model.filters=[4,8]"), "auto")]
)
def test_xla_trains_like_no_xla(tiny_config, tmp_path, model, jit):
    """The whole step compiled (mlp, jit=true), or only the latent maths (conv on CPU, jit=auto)."""
    plain = train(tiny_config(*model, "trainer.max_steps=3", "trainer.jit=false"), tmp_path / "plain")
    xla = train(tiny_config(*model, "trainer.max_steps=3", f"trainer.jit={jit}"), tmp_path / "xla")
    assert xla["elbo"] == pytest.approx(plain["elbo"], rel=1e-3)


def test_jit_auto_compiles_what_measured_faster_on_cpu():
    assert use_jit("auto", "mlp") == Jit(step=True, latent=False, update=True)
    assert use_jit("auto", "conv") == Jit(step=False, latent=True, update=True)
    assert use_jit("true", "conv") == Jit(step=True, latent=False, update=True)
    assert use_jit("false", "mlp") == Jit(step=False, latent=False, update=False)
    assert use_jit("auto", "mlp", "mixed_bfloat16") == Jit(step=False, latent=True, update=True)
    assert use_jit("auto", "mlp", "mixed_float16") == Jit(step=True, latent=False, update=True)


def test_conv_gaussian_and_dynamic_binarisation_train(tiny_config, tmp_path):
    m = train(
        tiny_config(
            "model=conv",
            "model.filters=[4]",
            "model.conv_dense=8",
            "model.likelihood=gaussian",
            "data.binarize=dynamic",
            "prior.covariance=diag",
            "trainer.max_steps=2",
        ),
        tmp_path,
    )
    assert m["step"] == 2 and np.isfinite(m["elbo"])


def test_tfds_dataset_by_name_trains(tiny_config, tmp_path):
    with tfds.testing.mock_data(num_examples=100):
        m = train(tiny_config("data=mnist", "trainer.max_steps=2"), tmp_path)
    assert m["step"] == 2 and m["num_examples"] == 100


def test_batch_larger_than_the_data_is_a_clear_error(tiny_config, tmp_path):
    with pytest.raises(VaemixError, match="trainer.batch_size=5000 is larger than the 4000 training examples"):
        train(tiny_config("trainer.batch_size=5000"), tmp_path)


def test_resuming_with_another_model_is_refused_before_touching_the_run(tiny_config, tmp_path):
    train(tiny_config("trainer.max_steps=1"), tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(VaemixError, match=r"was trained with model.latent_dim=2 \(now 3\), prior.components=3"):
        train(tiny_config("trainer.max_steps=2", "model.latent_dim=3", "prior.components=4"), tmp_path)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert train(tiny_config("trainer.max_steps=2", "trainer.lr=0.01"), tmp_path)["step"] == 2  # lr may change


def test_checkpoint_that_does_not_fit_is_a_clear_error(tiny_config, tmp_path):
    train(tiny_config("trainer.max_steps=1"), tmp_path)
    (tmp_path / "run_config.yaml").unlink()  # an old run without its record
    with pytest.raises(VaemixError, match="does not fit this model"):
        train(tiny_config("trainer.max_steps=2", "model.latent_dim=3"), tmp_path)


def test_mixed_float16_scales_the_loss_and_checkpoints_the_scale(tiny_config, tmp_path):
    overrides = ("trainer.precision=mixed_float16", "trainer.max_steps=2", "strategy=mirrored", "strategy.devices=2")
    m = train(tiny_config(*overrides), tmp_path)
    assert m["step"] == 2 and np.isfinite(m["elbo"])
    assert m["train/loss_scale"] == 2.0**15  # Keras's initial dynamic scale: it doubles after 2000 good steps
    assert "train/loss_scale" in _scalar_tags(tmp_path / "tensorboard")
    values = _checkpoint_values(tmp_path)
    # A resumed run goes on with the scale and its count of good steps.
    assert values["optimizer/loss_scale/current_loss_scale/.ATTRIBUTES/VARIABLE_VALUE"] == 2.0**15
    assert values["optimizer/loss_scale/good_steps/.ATTRIBUTES/VARIABLE_VALUE"] == 2
    assert all(v.dtype == np.float32 for k, v in values.items() if "optimizer" not in k)


def test_float16_overflow_skips_the_network_step_and_halves_the_scale(tiny_config):
    from vaemix.apps.loop import Loop
    from vaemix.apps.resolve import resolve
    from vaemix.apps.state import build_state
    from vaemix.apps.steps import StepOptions, make_schedule, make_train_step
    from vaemix.infra.images import load_images
    from vaemix.infra.summaries import Summaries
    from vaemix.maths.keras import keras

    cfg = tiny_config("trainer.precision=mixed_float16")
    data = load_images(cfg.data)
    cfg = resolve(cfg, data)
    schedule = make_schedule(len(data.train), 50, 1, 1, 1)
    state = build_state(cfg, data.shape, schedule.steps_per_epoch)
    vae = state.vae
    dense = [layer for layer in vae.encoder.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.compute_dtype for layer in dense] == ["float16", "float32"]  # hidden | head
    assert isinstance(state.optimizer, keras.mixed_precision.LossScaleOptimizer)
    # A scale of 2^40 overflows float16 in the backward pass of the hidden layers.
    scaler = keras.mixed_precision.LossScaleOptimizer(keras.optimizers.Adam(1e-3), initial_scale=2.0**40)
    prior_optimizer = keras.optimizers.Adam(1e-2)
    networks = [*vae.encoder.trainable_variables, *vae.decoder.trainable_variables]
    updates = [(scaler, networks), (prior_optimizer, list(vae.prior.trainable_variables))]
    strategy = tf.distribute.get_strategy()
    options = StepOptions(seed=0, jit=use_jit("false", "mlp"))
    train_steps, check_finite = make_train_step(vae, updates, strategy, schedule, options)
    before, loc = [v.numpy() for v in networks], vae.prior.loc.numpy()
    batches = Loop(strategy, data, cfg, True, Summaries("/unused", enabled=False)).batches(schedule, 0, 0)
    values = train_steps(batches, tf.constant(0, tf.int64), tf.constant(1, tf.int64))
    check_finite()  # a skipped float16 step is not divergence
    assert float(values["loss_scale"]) == 2.0**39 and np.isfinite(float(values["loss"]))
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, networks, strict=True))
    assert not np.allclose(loc, vae.prior.loc.numpy())  # the prior's float32 gradients were applied


def test_mixed_bfloat16_keeps_heads_and_loss_in_float32(tiny_config, tmp_path):
    from vaemix.maths.keras import keras

    m = train(tiny_config("trainer.precision=mixed_bfloat16", "trainer.max_steps=2"), tmp_path)
    assert m["step"] == 2 and np.isfinite(m["elbo"])
    assert keras.mixed_precision.global_policy().name == "float32"  # the policy does not leak
    values = _checkpoint_values(tmp_path)
    assert all(v.dtype == np.float32 for k, v in values.items() if "optimizer" not in k)
