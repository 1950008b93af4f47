"""Range and choice checks of the typed config, one function per ``conf/`` group.

Each raises :class:`~vaemix.errors.VaemixError` naming the key, the value and what is allowed.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from vaemix.errors import VaemixError
from vaemix.infra.config import (
    Config,
    DataConfig,
    EvaluateConfig,
    ExportConfig,
    ModelConfig,
    PredictConfig,
    PriorConfig,
    StrategyConfig,
    TaskConfig,
    TrainerConfig,
)

TASKS = ("vae", "gmm", "bgmm_svi", "bgmm_hmc", "mdn")
# What a sweep may maximise: label-free signals first, then those that need labels
OBJECTIVES = ("confidence", "separation", "smallest_share", "elbo", "cluster_acc", "nmi", "ari")
LIKELIHOODS = ("auto", "bernoulli", "gaussian", "gaussian_per_feature", "logistic")


def choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise VaemixError(f"{key}={value!r} is not allowed; choose one of: {', '.join(allowed)}")


def at_least(key: str, value: float | None, low: float, *, strict: bool = False) -> None:
    if value is None:
        return
    bad = value <= low if strict else value < low
    if bad:
        op = ">" if strict else ">="
        raise VaemixError(f"{key}={value!r} is out of range; it must be {op} {low:g}")


def check_task(k: TaskConfig, d: DataConfig) -> None:
    """A toolkit task (not the VAE) and its tabular data."""
    choice("task.covariance", k.covariance, ("full", "diag"))
    for key in ("components", "n_init", "epochs", "num_results", "num_burnin", "chains"):
        at_least(f"task.{key}", getattr(k, key), 1)
    if d.name not in ("blobs", "table"):
        raise VaemixError(f"task={k.kind} fits tabular data; use data=blobs or data=table (got data.name={d.name!r})")
    if d.name == "table" and not d.path:
        raise VaemixError("data=table needs data.path=<a .npz with x (and y) or a .csv>")
    if k.standardize is not None and k.kind != "gmm":
        raise VaemixError(f"task.standardize is for task=gmm; task={k.kind} always standardises them within")
    if k.kind == "mdn" and d.name == "table" and not d.targets:
        raise VaemixError("task=mdn on data=table needs data.targets=[column, ...] (the y columns)")
    for key in ("n", "dims", "clusters"):
        at_least(f"data.{key}", getattr(d, key), 1)


def check_data(d: DataConfig) -> None:
    """Images or a table for the VAE."""
    choice("data.binarize", d.binarize, ("none", "static", "dynamic"))
    if d.name == "blobs":
        raise VaemixError("data=blobs generates points for the toolkit; choose a task: task=gmm|bgmm_svi|bgmm_hmc|mdn")
    if d.name == "local" and not d.images:
        raise VaemixError("data=local needs data.images=<an IDX (.gz) or .npz file, or a folder of PNG/JPEG files>")
    if d.name == "table" and not d.path:
        raise VaemixError("data=table needs data.path=<a .csv, a .npz with x (and labels y), or a .npy>")
    if d.name == "table" and d.binarize != "none":
        raise VaemixError(f"data.binarize={d.binarize!r} is for images; a table takes data.binarize=none")
    choice("data.impute", d.impute, ("none", "mean", "median"))
    choice("data.preprocessing", d.preprocessing, ("standardize", "none"))
    for key in ("max_shift", "max_rotation", "max_zoom", "corrupt_noise"):
        at_least(f"data.{key}", getattr(d, key), 0.0)
    at_least("data.neighbours", d.neighbours, 0)
    if d.neighbours and (d.name != "table" or not d.augment):
        raise VaemixError(
            f"data.neighbours={d.neighbours} is for a table's augmented views (data=table data.augment=true);"
            " images are augmented by pose: leave it 0"
        )
    for key in ("test_fraction", "corrupt_fraction"):
        if not 0.0 <= getattr(d, key) <= 1.0 or (key == "test_fraction" and getattr(d, key) in (0.0, 1.0)):
            raise VaemixError(f"data.{key}={getattr(d, key)!r} is out of range; it must be in (0, 1)")
    if d.image_size is not None and (len(d.image_size) != 2 or min(d.image_size) < 1):
        raise VaemixError(f"data.image_size={d.image_size!r} must be [height, width] in pixels")


def check_model(m: ModelConfig, d: DataConfig) -> None:
    choice("model.architecture", m.architecture, ("mlp", "conv"))
    choice("model.likelihood", m.likelihood, LIKELIHOODS)
    if m.likelihood == "logistic" and (d.binarize != "none" or d.name == "table"):
        raise VaemixError("model.likelihood=logistic scores 8-bit images; use it with data.binarize=none on images")
    if d.name == "table" and m.architecture != "mlp":
        raise VaemixError(f"model.architecture={m.architecture!r} takes images; a table needs model=mlp")
    at_least("model.latent_dim", m.latent_dim, 1)
    for i, width in enumerate(m.hidden or []):
        at_least(f"model.hidden[{i}]", width, 1)
    for i, width in enumerate(m.filters):
        at_least(f"model.filters[{i}]", width, 1)
    at_least("model.conv_dense", m.conv_dense, 1)
    at_least("model.sphere_radius", m.sphere_radius, 0.0, strict=True)


def check_prior(p: PriorConfig, pretrain_epochs: int) -> None:
    choice("prior.kind", p.kind, ("gmm", "normal"))
    choice("prior.covariance", p.covariance, ("full", "diag"))
    choice("prior.init", p.init, ("random", "gmm", "kmeans"))
    if p.init != "random" and p.kind == "gmm" and pretrain_epochs == 0:
        raise VaemixError(
            f"prior.init={p.init} fits the prior to pretrained latents; set trainer.pretrain_epochs > 0, "
            "or prior.init=random (experiment=plain trains without the recipe)"
        )
    at_least("prior.components", p.components, 1)
    at_least("prior.init_restarts", p.init_restarts, 1)


def check_trainer(t: TrainerConfig, augment: bool) -> None:
    t.jit = str(t.jit).lower()
    choice("trainer.jit", t.jit, ("auto", "true", "false"))
    if t.precision is not None:
        choice("trainer.precision", t.precision, ("float32", "mixed_float16", "mixed_bfloat16"))
    choice("trainer.pretrain_choice", t.pretrain_choice, ("auto", "smallest_share", "confidence"))
    for key in (
        "epochs",
        "max_steps",
        "batch_size",
        "kl_samples",
        "lr_decay_epochs",
        "log_every",
        "checkpoint_every",
        "keep_checkpoints",
        "eval_samples",
        "pretrain_candidates",
    ):
        at_least(f"trainer.{key}", getattr(t, key), 1)
    for key in ("lr", "prior_lr", "lr_decay", "pretrain_lr", "temperature"):
        at_least(f"trainer.{key}", getattr(t, key), 0.0, strict=True)
    for key in ("pretrain_epochs", "kl_warmup_epochs", "pretrain_contrastive", "contrastive", "image_every"):
        at_least(f"trainer.{key}", getattr(t, key), 0)
    if (t.contrastive or t.pretrain_contrastive) and not augment:
        raise VaemixError(
            "trainer.contrastive / trainer.pretrain_contrastive compare two augmented views; set data.augment=true"
        )


def check_strategy(s: StrategyConfig) -> None:
    choice("strategy.kind", s.kind, ("default", "mirrored", "multi_worker"))
    at_least("strategy.devices", s.devices, 1)


def validate(cfg: Config) -> Config:
    """Check ranges and choices that the types alone do not capture; return ``cfg`` unchanged."""
    choice("task.kind", cfg.task.kind, TASKS)
    if cfg.task.kind != "vae":
        check_task(cfg.task, cfg.data)
        return cfg
    check_data(cfg.data)
    if cfg.optimized_metric is not None:
        choice("optimized_metric", cfg.optimized_metric, OBJECTIVES)
    check_model(cfg.model, cfg.data)
    check_prior(cfg.prior, cfg.trainer.pretrain_epochs)
    check_trainer(cfg.trainer, cfg.data.augment)
    check_strategy(cfg.strategy)
    return cfg


def to_config(cfg: DictConfig) -> Config:
    """Turn Hydra's composed config into typed dataclasses and validate them."""
    obj = OmegaConf.to_object(cfg)
    if not isinstance(obj, Config):  # composed without the schema (e.g. an old saved config)
        raise VaemixError("the config does not follow vaemix's schema (conf/config.yaml defaults)")
    return validate(obj)


def to_evaluate_config(cfg: DictConfig) -> EvaluateConfig:
    """Typed, checked ``evaluate.py`` config."""
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, EvaluateConfig)
    at_least("eval.iwae_samples", obj.eval.iwae_samples, 0)
    at_least("eval.max_examples", obj.eval.max_examples, 1)
    if obj.data is not None:
        check_data(obj.data)
    return obj


def to_predict_config(cfg: DictConfig) -> PredictConfig:
    """Typed, checked ``predict.py`` config (its data is checked against the run, which says what it takes)."""
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, PredictConfig)
    choice("predict.split", obj.predict.split, ("all", "train", "test"))
    at_least("predict.iwae_samples", obj.predict.iwae_samples, 0)
    at_least("predict.batch_size", obj.predict.batch_size, 1)
    return obj


def to_export_config(cfg: DictConfig) -> ExportConfig:
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, ExportConfig)
    return obj
