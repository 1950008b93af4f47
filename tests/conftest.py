"""One TF process for the whole suite: two logical CPUs (for MirroredStrategy tests) are configured
here, before any test touches TensorFlow; configs are composed from the real ``conf/`` tree."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from hydra import compose, initialize_config_dir  # noqa: E402

from vaemix.infra.config import Config, register_schemas  # noqa: E402
from vaemix.infra.validation import to_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
register_schemas()

# Small enough that a training step takes milliseconds.
TINY = [
    "experiment=plain",
    "model.hidden=[32]",
    "model.latent_dim=2",
    "prior.components=3",
    "trainer.batch_size=50",
    "trainer.log_every=1",
    "trainer.progress=false",
]


def compose_config(*overrides: str) -> Config:
    """The real config with ``overrides``, typed and validated like ``train.py`` does."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return to_config(compose(config_name="config", overrides=list(overrides)))


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory) -> str:
    """A TFDS data dir shared by the session (mnist5k is prepared into it once)."""
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture
def tiny_config(tfds_dir):
    """``compose_config`` with the tiny model on the embedded mnist5k."""

    def make(*overrides: str) -> Config:
        return compose_config(*TINY, f"data.data_dir={tfds_dir}", *overrides)

    return make
