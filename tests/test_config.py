"""The real ``conf/`` tree composes, and bad values fail naming the key, the value and what is allowed."""

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from conftest import compose_config
from vaemix.errors import VaemixError


def test_defaults_are_the_clustering_recipe_on_embedded_mnist5k():
    cfg = compose_config()
    assert cfg.data.name == "mnist5k" and cfg.model.architecture == "mlp"
    # Widths and likelihood follow the data (vaemix.apps.resolve): VaDE's 500-500-2000 and Bernoulli for images.
    assert cfg.model.hidden is None and cfg.model.likelihood == "auto" and cfg.model.latent_dim is None
    assert cfg.prior.kind == "gmm" and cfg.prior.components == 10 and cfg.prior.covariance == "full"
    assert cfg.strategy.kind == "default" and cfg.trainer.kl_samples == 1
    assert cfg.prior.init == "gmm" and cfg.trainer.pretrain_epochs > 0 and cfg.data.augment
    assert cfg.trainer.pretrain_contrastive > 0 and cfg.model.sphere_radius


def test_experiments_switch_the_recipe_and_command_line_wins():
    vade = compose_config("experiment=vade", "trainer.pretrain_epochs=7")
    assert not vade.data.augment and vade.prior.init == "gmm" and vade.trainer.pretrain_epochs == 7
    plain = compose_config("experiment=plain")
    assert plain.trainer.pretrain_epochs == 0 and plain.prior.init == "random"


def test_groups_and_overrides_compose():
    cfg = compose_config(
        "data=fashion_mnist",
        "prior.components=7",
        "model=conv",
        "prior=normal",
        "strategy=mirrored",
        "strategy.devices=2",
    )
    assert cfg.data.name == "fashion_mnist" and cfg.model.architecture == "conv"
    assert cfg.prior.kind == "normal" and cfg.strategy.devices == 2


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.latent_dim=0", "model.latent_dim=0 is out of range; it must be >= 1"),
        ("prior.components=-1", "prior.components=-1 is out of range; it must be >= 1"),
        ("trainer.lr=-1", "trainer.lr=-1.0 is out of range; it must be > 0"),
        ("trainer.lr=0", "trainer.lr=0.0 is out of range; it must be > 0"),
        ("trainer.kl_samples=0", "trainer.kl_samples=0 is out of range"),
        ("trainer.batch_size=0", "trainer.batch_size=0 is out of range"),
        ("trainer.epochs=0", "trainer.epochs=0 is out of range"),
        ("data.binarize=maybe", "data.binarize='maybe' is not allowed; choose one of: none, static, dynamic"),
        ("prior.covariance=spherical", "prior.covariance='spherical' is not allowed; choose one of: full, diag"),
        ("model.likelihood=poisson", "model.likelihood='poisson' is not allowed"),
        ("model.hidden=[16,0]", r"model.hidden\[1\]=0 is out of range"),
        ("data.test_fraction=1.5", "data.test_fraction=1.5 is out of range"),
        ("data.neighbours=-1", "data.neighbours=-1 is out of range; it must be >= 0"),
        ("data.neighbours=3", "data.neighbours=3 is for a table's augmented views"),
        ("task=gmm", "task=gmm fits tabular data; use data=blobs or data=table"),
        ("data=blobs", "data=blobs generates points for the toolkit; choose a task"),
        ("task.kind=kmeans", "task.kind='kmeans' is not allowed"),
        ("trainer.jit=sometimes", "trainer.jit='sometimes' is not allowed; choose one of: auto, true, false"),
        ("data.augment=false", "set data.augment=true"),
        ("trainer.pretrain_epochs=0", "set trainer.pretrain_epochs > 0, or prior.init=random"),
        ("prior.init_restarts=0", "prior.init_restarts=0 is out of range; it must be >= 1"),
        (
            "trainer.pretrain_choice=best",
            "trainer.pretrain_choice='best' is not allowed; choose one of: auto, smallest_share, confidence",
        ),
    ],
)
def test_bad_values_name_key_value_and_allowed(override, message):
    with pytest.raises(VaemixError, match=message):
        compose_config(override)


def test_local_data_needs_a_path():
    with pytest.raises(VaemixError, match="data=local needs data.images"):
        compose_config("data=local")


def test_wrong_types_unknown_keys_and_groups_fail_while_composing():
    with pytest.raises(ConfigCompositionException, match="trainer.lr"):
        compose_config("trainer.lr=fast")
    with pytest.raises(ConfigCompositionException, match="trainer.learning_rate"):
        compose_config("trainer.learning_rate=0.1")
    with pytest.raises(ConfigCompositionException, match="prior/mystery"):
        compose_config("prior=mystery")
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose_config("model.latent_dim=2.5")
