"""Typed config schemas (one dataclass per ``conf/`` group) and their range checks.

Hydra merges the YAML files in ``conf/`` onto these schemas, so a wrong *type* or an unknown key fails
while composing; :mod:`vaemix.infra.validation` then checks ranges and choices. Neither imports
TensorFlow, so bad configs fail fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class DataConfig:
    """Where the data come from and how they are preprocessed."""

    name: str = MISSING  # mnist5k | local | table | blobs | any TFDS image dataset name
    binarize: str = "none"  # none | static | dynamic
    data_dir: str | None = None  # TFDS data dir (None: TFDS default, ~/tensorflow_datasets)
    download: bool = True  # let TFDS download a dataset that is not prepared locally
    train_split: str = "train"
    test_split: str = "test"
    # data=local: IDX (.gz or raw) or .npz files, or a folder of image files (PNG, JPEG, BMP, GIF, TIFF,
    # WebP; labels from subfolder names); without test files, test_fraction of train is held out.
    images: str | None = None
    labels: str | None = None
    test_images: str | None = None
    test_labels: str | None = None
    test_fraction: float = 0.2
    image_size: list[int] | None = None  # [H, W]: resize the images of a folder to this size
    # Augmented views for the encoder (the decoder still explains the original): images are shifted,
    # rotated and zoomed; table rows are corrupted (a fraction of each row's features replaced by the same
    # feature of other rows of the batch, plus Gaussian noise in standard deviations).
    augment: bool = False
    max_shift: float = 0.1  # fraction of the image size
    max_rotation: float = 10.0  # degrees
    max_zoom: float = 0.1
    corrupt_fraction: float = 0.2
    corrupt_noise: float = 0.1
    # Tables: the second view corrupts one of the row's k nearest training rows, not the row itself (within
    # the batch for a .npy read from disk or over 50,000 rows); 0, the recipe: the row itself
    neighbours: int = 0
    # Tables: data=table with data.path a .csv (.tsv, .txt, gzipped too), a .npz with x (and labels y) or
    # a .npy (memory-mapped); data=blobs generates Gaussian blobs for the toolkit's tasks.
    path: str | None = None
    # The arrays of a .npz (data=table and data=local) that hold the examples and the labels (optional
    # while y): x is also found as X, or as the file's only array.
    x_key: str = "x"
    y_key: str = "y"
    header: bool | None = None  # a CSV's first row names the columns (true) or is data (false); null: detected
    label_column: str | None = None  # the column (name, or index from 0) that holds labels, not a feature
    categorical_columns: list[str] = field(default_factory=list)  # one-hot encoded (names or indices)
    drop_columns: list[str] = field(default_factory=list)  # left out (names or indices)
    impute: str = "none"  # missing values: none (an error naming the rows) | mean | median
    preprocessing: str = "standardize"  # standardize (by the training rows' mean and std) | none
    targets: list[int] = field(default_factory=list)  # task=mdn: the columns that are y
    n: int = 3000
    dims: int = 2
    clusters: int = 3
    separation: float = 4.0


@dataclass
class ModelConfig:
    """Encoder/decoder networks and the observation likelihood."""

    architecture: str = "mlp"  # mlp | conv
    latent_dim: int | None = None  # None: 10 for images, F/2 within 2..10 for a table of F features
    hidden: list[int] | None = None  # mlp layer widths (None: 500-500-2000 for images, sized from a table's F)
    filters: list[int] = field(default_factory=lambda: [32, 64])  # conv: stride-2 conv layers
    conv_dense: int = 256  # conv: dense layer between the convolutions and the latent head
    # p(x|z): auto (bernoulli for images and 0/1 tables, gaussian_per_feature for other tables) | bernoulli |
    # gaussian (a scale per example and feature) | gaussian_per_feature (a learned scale per feature) |
    # logistic (discretised, per channel: 8-bit images)
    likelihood: str = "auto"
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
    # global batch, split across replicas; None: 256 for images, for a table a tenth of its training rows
    # within 16..256 (about 10 steps an epoch)
    batch_size: int | None = None
    lr: float = 1e-3
    prior_lr: float | None = None  # learning rate of the prior's variables (None: trainer.lr)
    lr_decay: float = 1.0  # multiply the learning rates by this every lr_decay_epochs
    lr_decay_epochs: int = 10
    pretrain_epochs: int = 0  # autoencoder pretraining of the same networks before the ELBO phase
    pretrain_lr: float = 1e-3
    # Pretrain this many candidates from different seeds and keep one by pretrain_choice, scored on the
    # training latents under its fitted prior (None: 3 for images, 2 for a table); not a restart of the run dir.
    pretrain_candidates: int | None = 1
    # smallest_share: the largest smallest cluster (ties: confidence) | confidence: mean max_k p(k|z) |
    # auto: smallest_share for images, confidence for tables (where the share ranked candidates no better)
    pretrain_choice: str = "auto"
    kl_warmup_epochs: int = 0  # KL weight rises linearly from 0 to 1 over these epochs
    # Weight of the two-view contrastive term on the encoder means (needs data.augment=true), in the
    # pretraining and the ELBO phase, and its temperature (in squared latent distance).
    pretrain_contrastive: float = 0.0
    contrastive: float = 0.0
    temperature: float = 2.0
    kl_samples: int = 1  # Monte Carlo samples of z per example for reconstruction and KL
    jit: str = "auto"  # XLA-compile the per-replica step: auto (GPU; a CPU: the float32 mlp) | true | false
    log_every: int = 20  # steps between scalar summaries (and finite-loss checks)
    checkpoint_every: int = 500  # steps between checkpoints (also saved at the end)
    keep_checkpoints: int = 3
    image_every: int = 500  # steps between TensorBoard pictures (0: only at the end)
    eval_samples: int = 1  # z samples per test example for eval/elbo each epoch
    progress: bool = True  # progress bar on a terminal
    # float32 | mixed_float16 (dynamic loss scaling) | mixed_bfloat16; heads, loss and variables stay float32.
    # null (the recipe): mixed_bfloat16 for grey-level images through the MLP on a CPU with bfloat16 units
    precision: str | None = "float32"
    deterministic: bool = False  # tf.config.experimental.enable_op_determinism: same numbers every run
    overwrite: bool = False  # start the run dir again: its earlier files are moved aside to previous-<time>/


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
    covariance: str = "full"  # gmm and bgmm_svi: full | diag
    # gmm: EM on the standardised columns, the mixture saved in their own units (null: when their ranges
    # differ by units, as wine's do; the Bayesian fits always standardise within)
    standardize: bool | None = None
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
    # What train.py returns to a Hydra sweeper (conf/hparams_search/): a final metric, higher is better
    optimized_metric: str | None = None


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


@dataclass
class PredictOptions:
    """What ``predict.py`` computes and where it writes."""

    split: str = "all"  # all (a local file whole, in its order; a TFDS dataset's train then test) | train | test
    out: str | None = None  # output path without extension (default: <run_dir>/predictions/<data name>)
    iwae_samples: int = 0  # importance samples of each example's log-likelihood (or score); 0: none
    seed: int = 0  # of those samples
    batch_size: int = 500  # examples computed and written at a time


@dataclass
class PredictConfig:
    """``python predict.py run_dir=... [data=...] [predict.iwae_samples=100]``."""

    run_dir: str = MISSING
    checkpoint: str | None = None  # e.g. ckpt-1500; None: the latest
    data: DataConfig | None = None  # None: the data the run was trained on
    predict: PredictOptions = field(default_factory=PredictOptions)


@dataclass
class ExportConfig:
    """``python export.py run_dir=... [checkpoint=ckpt-N]``."""

    run_dir: str = MISSING
    checkpoint: str | None = None  # None: the latest


def register_schemas() -> None:
    """Make the schemas available to ``defaults:`` lists as ``<group>/base``."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(name="base_evaluate", node=EvaluateConfig)
    cs.store(name="base_predict", node=PredictConfig)
    cs.store(name="base_export", node=ExportConfig)
    for group, node in [
        ("data", DataConfig),
        ("model", ModelConfig),
        ("prior", PriorConfig),
        ("trainer", TrainerConfig),
        ("strategy", StrategyConfig),
        ("task", TaskConfig),
    ]:
        cs.store(group=group, name="base", node=node)


def flatten(config: Mapping, prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"trainer.lr": 0.001, ...}``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out |= flatten(value, f"{name}.")
        else:
            out[name] = value
    return out
