"""Typed config schemas (one dataclass per ``conf/`` group) and their range checks.

Hydra merges the YAML files in ``conf/`` onto these schemas, so a wrong *type* or an unknown key fails
while composing. :func:`validate` then checks ranges and choices and raises :class:`UserError` naming
the key, the value and what is allowed. This module imports no TensorFlow, so bad configs fail fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from vaemix.errors import UserError


@dataclass
class DataConfig:
    """Where images come from and how they are preprocessed."""

    name: str = MISSING  # mnist5k | local | any TFDS image dataset name
    binarize: str = "none"  # none | static | dynamic
    data_dir: str | None = None  # TFDS data dir (None: TFDS default, ~/tensorflow_datasets)
    download: bool = True  # let TFDS download a dataset that is not prepared locally
    train_split: str = "train"
    test_split: str = "test"
    # data=local: IDX (.gz or raw) or .npz files; without test files, test_fraction of train is held out.
    images: str | None = None
    labels: str | None = None
    test_images: str | None = None
    test_labels: str | None = None
    test_fraction: float = 0.2
    # Augmented views for the encoder (the decoder still explains the original image).
    augment: bool = False
    max_shift: float = 0.1  # fraction of the image size
    max_rotation: float = 10.0  # degrees
    max_zoom: float = 0.1
    # Tabular data for the mixture tasks: data=blobs (generated) or data=table (a .npz with x [, y]
    # or a .csv; data.targets names the columns that are y for task=mdn).
    n: int = 3000
    dims: int = 2
    clusters: int = 3
    separation: float = 4.0
    path: str | None = None
    targets: list[int] = field(default_factory=list)


@dataclass
class ModelConfig:
    """Encoder/decoder networks and the observation likelihood."""

    architecture: str = "mlp"  # mlp | conv
    latent_dim: int = 10
    hidden: list[int] = field(default_factory=lambda: [500, 500, 2000])  # mlp layer widths
    filters: list[int] = field(default_factory=lambda: [32, 64])  # conv: stride-2 conv layers
    conv_dense: int = 256  # conv: dense layer between the convolutions and the latent head
    likelihood: str = "bernoulli"  # bernoulli | gaussian
    sphere_radius: float | None = None  # put the encoder's mean on a sphere of this radius


@dataclass
class PriorConfig:
    """The latent prior p(z)."""

    kind: str = "gmm"  # gmm | normal
    components: int = 10
    covariance: str = "full"  # full | diag
    init: str = "random"  # random | gmm | kmeans: fit to the pretrained latent means (gmm prior only)
    init_restarts: int = 20  # fits from different seeds; the one that agrees most with the others is kept


@dataclass
class TrainerConfig:
    """Optimisation and bookkeeping."""

    epochs: int = 100
    max_steps: int | None = None  # stop after this many steps in total (None: epochs decide)
    batch_size: int = 256  # global batch, split across replicas
    lr: float = 1e-3
    prior_lr: float | None = None  # learning rate of the prior's variables (None: trainer.lr)
    lr_decay: float = 1.0  # multiply the learning rates by this every lr_decay_epochs
    lr_decay_epochs: int = 10
    pretrain_epochs: int = 0  # autoencoder pretraining of the same networks before the ELBO phase
    pretrain_lr: float = 1e-3
    kl_warmup_epochs: int = 0  # KL weight rises linearly from 0 to 1 over these epochs
    # Weight of the two-view contrastive term on the encoder means (needs data.augment=true), in the
    # pretraining and the ELBO phase, and its temperature (in squared latent distance).
    pretrain_contrastive: float = 0.0
    contrastive: float = 0.0
    temperature: float = 2.0
    kl_samples: int = 1  # Monte Carlo samples of z per example for reconstruction and KL
    jit: str = "auto"  # XLA-compile the per-replica step: auto (mlp always, conv on GPU) | true | false
    log_every: int = 20  # steps between scalar summaries (and finite-loss checks)
    checkpoint_every: int = 500  # steps between checkpoints (also saved at the end)
    keep_checkpoints: int = 3
    image_every: int = 500  # steps between TensorBoard pictures (0: only at the end)
    eval_samples: int = 1  # z samples per test example for eval/elbo each epoch
    progress: bool = True  # progress bar on a terminal
    # float32 | mixed_float16 (dynamic loss scaling) | mixed_bfloat16; heads, loss and variables stay float32
    precision: str = "float32"
    deterministic: bool = False  # tf.config.experimental.enable_op_determinism: same numbers every run


@dataclass
class StrategyConfig:
    """The tf.distribute strategy."""

    kind: str = "default"  # default | mirrored | multi_worker
    devices: int | None = None  # mirrored on CPU: number of logical CPU devices to create


@dataclass
class TaskConfig:
    """What ``train.py`` fits: the VAE, or a model of the mixture toolkit on tabular data."""

    kind: str = "vae"  # vae | gmm | bgmm_svi | bgmm_hmc | mdn
    components: int = 3
    covariance: str = "full"  # gmm: full | diag
    n_init: int = 3
    epochs: int = 200  # bgmm_svi and mdn
    num_results: int = 500  # bgmm_hmc draws per chain after burn-in
    num_burnin: int = 500
    chains: int = 4
    hidden: list[int] = field(default_factory=lambda: [64, 64])  # mdn


@dataclass
class Config:
    """The whole run."""

    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    prior: PriorConfig = MISSING
    trainer: TrainerConfig = MISSING
    strategy: StrategyConfig = MISSING
    task: TaskConfig = field(default_factory=TaskConfig)
    seed: int = 0


@dataclass
class EvalOptions:
    """What ``evaluate.py`` computes."""

    iwae_samples: int = 1000  # importance samples per example for iwae_nll (5000: paper protocol; 0: skip)
    max_examples: int | None = None  # evaluate on the first N test examples only
    pictures: bool = True


@dataclass
class EvaluateConfig:
    """``python evaluate.py run_dir=... [checkpoint=ckpt-N] [data=... ]``."""

    run_dir: str = MISSING
    checkpoint: str | None = None  # e.g. ckpt-1500; None: the latest
    data: DataConfig | None = None  # None: the data the run was trained on
    eval: EvalOptions = field(default_factory=EvalOptions)


def register_schemas() -> None:
    """Make the schemas available to ``defaults:`` lists as ``<group>/base``."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(name="base_evaluate", node=EvaluateConfig)
    for group, node in [
        ("data", DataConfig),
        ("model", ModelConfig),
        ("prior", PriorConfig),
        ("trainer", TrainerConfig),
        ("strategy", StrategyConfig),
        ("task", TaskConfig),
    ]:
        cs.store(group=group, name="base", node=node)


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"{key}={value!r} is not allowed; choose one of: {', '.join(allowed)}")


def _at_least(key: str, value: float | None, low: float, *, strict: bool = False) -> None:
    if value is None:
        return
    bad = value <= low if strict else value < low
    if bad:
        op = ">" if strict else ">="
        raise UserError(f"{key}={value!r} is out of range; it must be {op} {low:g}")


def validate(cfg: Config) -> Config:
    """Check ranges and choices that the types alone do not capture; return ``cfg`` unchanged."""
    d, m, p, t, s = cfg.data, cfg.model, cfg.prior, cfg.trainer, cfg.strategy
    k = cfg.task
    _choice("task.kind", k.kind, ("vae", "gmm", "bgmm_svi", "bgmm_hmc", "mdn"))
    if k.kind != "vae":
        _choice("task.covariance", k.covariance, ("full", "diag"))
        for key in ("components", "n_init", "epochs", "num_results", "num_burnin", "chains"):
            _at_least(f"task.{key}", getattr(k, key), 1)
        if d.name not in ("blobs", "table"):
            raise UserError(f"task={k.kind} fits tabular data; use data=blobs or data=table (got data.name={d.name!r})")
        if d.name == "table" and not d.path:
            raise UserError("data=table needs data.path=<a .npz with x (and y) or a .csv>")
        if k.kind == "mdn" and d.name == "table" and not d.targets:
            raise UserError("task=mdn on data=table needs data.targets=[column, ...] (the y columns)")
        for key in ("n", "dims", "clusters"):
            _at_least(f"data.{key}", getattr(d, key), 1)
        return cfg
    _choice("data.binarize", d.binarize, ("none", "static", "dynamic"))
    if d.name in ("blobs", "table"):
        raise UserError(f"data={d.name} is tabular; choose a task: task=gmm|bgmm_svi|bgmm_hmc|mdn")
    if d.name == "local" and not d.images:
        raise UserError("data=local needs data.images=<path to an IDX (.gz) or .npz file>")
    _at_least("data.max_shift", d.max_shift, 0.0)
    _at_least("data.max_rotation", d.max_rotation, 0.0)
    _at_least("data.max_zoom", d.max_zoom, 0.0)
    if not 0.0 < d.test_fraction < 1.0:
        raise UserError(f"data.test_fraction={d.test_fraction!r} is out of range; it must be in (0, 1)")
    _choice("model.architecture", m.architecture, ("mlp", "conv"))
    _choice("model.likelihood", m.likelihood, ("bernoulli", "gaussian"))
    _at_least("model.latent_dim", m.latent_dim, 1)
    for i, width in enumerate(m.hidden):
        _at_least(f"model.hidden[{i}]", width, 1)
    for i, width in enumerate(m.filters):
        _at_least(f"model.filters[{i}]", width, 1)
    _at_least("model.conv_dense", m.conv_dense, 1)
    _at_least("model.sphere_radius", m.sphere_radius, 0.0, strict=True)
    _choice("prior.kind", p.kind, ("gmm", "normal"))
    _choice("prior.covariance", p.covariance, ("full", "diag"))
    _choice("prior.init", p.init, ("random", "gmm", "kmeans"))
    if p.init != "random" and p.kind == "gmm" and t.pretrain_epochs == 0:
        raise UserError(
            f"prior.init={p.init} fits the prior to pretrained latents; set trainer.pretrain_epochs > 0, "
            "or prior.init=random (experiment=plain trains without the recipe)"
        )
    _at_least("prior.components", p.components, 1)
    _at_least("prior.init_restarts", p.init_restarts, 1)
    t.jit = str(t.jit).lower()
    _choice("trainer.jit", t.jit, ("auto", "true", "false"))
    _choice("trainer.precision", t.precision, ("float32", "mixed_float16", "mixed_bfloat16"))
    _at_least("trainer.epochs", t.epochs, 1)
    _at_least("trainer.max_steps", t.max_steps, 1)
    _at_least("trainer.batch_size", t.batch_size, 1)
    _at_least("trainer.lr", t.lr, 0.0, strict=True)
    _at_least("trainer.kl_samples", t.kl_samples, 1)
    _at_least("trainer.prior_lr", t.prior_lr, 0.0, strict=True)
    _at_least("trainer.lr_decay", t.lr_decay, 0.0, strict=True)
    _at_least("trainer.lr_decay_epochs", t.lr_decay_epochs, 1)
    _at_least("trainer.pretrain_epochs", t.pretrain_epochs, 0)
    _at_least("trainer.pretrain_lr", t.pretrain_lr, 0.0, strict=True)
    _at_least("trainer.kl_warmup_epochs", t.kl_warmup_epochs, 0)
    _at_least("trainer.pretrain_contrastive", t.pretrain_contrastive, 0.0)
    _at_least("trainer.contrastive", t.contrastive, 0.0)
    _at_least("trainer.temperature", t.temperature, 0.0, strict=True)
    if (t.contrastive or t.pretrain_contrastive) and not d.augment:
        raise UserError(
            "trainer.contrastive / trainer.pretrain_contrastive compare two augmented views; set data.augment=true"
        )
    _at_least("trainer.log_every", t.log_every, 1)
    _at_least("trainer.checkpoint_every", t.checkpoint_every, 1)
    _at_least("trainer.keep_checkpoints", t.keep_checkpoints, 1)
    _at_least("trainer.image_every", t.image_every, 0)
    _at_least("trainer.eval_samples", t.eval_samples, 1)
    _choice("strategy.kind", s.kind, ("default", "mirrored", "multi_worker"))
    _at_least("strategy.devices", s.devices, 1)
    return cfg


def to_evaluate_config(cfg: DictConfig) -> EvaluateConfig:
    """Typed, checked ``evaluate.py`` config."""
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, EvaluateConfig)
    _at_least("eval.iwae_samples", obj.eval.iwae_samples, 0)
    _at_least("eval.max_examples", obj.eval.max_examples, 1)
    if obj.data is not None:
        validate(
            Config(
                data=obj.data,
                model=ModelConfig(),
                prior=PriorConfig(),
                trainer=TrainerConfig(),
                strategy=StrategyConfig(),
            )
        )
    return obj


def to_config(cfg: DictConfig) -> Config:
    """Turn Hydra's composed config into typed dataclasses and validate them."""
    obj = OmegaConf.to_object(cfg)
    if not isinstance(obj, Config):  # composed without the schema (e.g. an old saved config)
        raise UserError("the config does not follow vaemix's schema (conf/config.yaml defaults)")
    return validate(obj)
