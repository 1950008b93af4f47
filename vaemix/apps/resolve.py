"""The config's data-dependent settings made concrete before a run starts: the likelihood, the MLP's
widths, the latent size and the batch. The resolved config is what ``run_config.yaml``
records, so evaluation, prediction and export rebuild exactly the model that trained."""

from __future__ import annotations

import logging
from dataclasses import replace

import tensorflow as tf

from vaemix.errors import VaemixError
from vaemix.infra.config import Config
from vaemix.infra.examples import Dataset
from vaemix.infra.hardware import cpu_has_bfloat16_units

log = logging.getLogger("vaemix")

IMAGE_WIDTHS = [500, 500, 2000]  # VaDE's MLP
IMAGE_LATENT, IMAGE_BATCH = 10, 256


def table_widths(features: int) -> list[int]:
    """MLP widths for a table of ``features`` columns: 2F, 2F, 4F within 64..500 and 128..2000 (784
    features give VaDE's 500-500-2000)."""
    narrow, wide = min(500, max(64, 2 * features)), min(2000, max(128, 4 * features))
    return [narrow, narrow, wide]


def table_latent_dim(features: int) -> int:
    """Half the features within 2..10: a latent as wide as the data would only copy it."""
    return min(IMAGE_LATENT, max(2, features // 2))


def table_batch(rows: int) -> int:
    """A tenth of the training rows within 16..256: a small table still gets ~10 steps an epoch."""
    return min(IMAGE_BATCH, max(16, rows // 10))


def _batch(cfg: Config, data: Dataset, replicas: int) -> int:
    """The global batch; one chosen here is a multiple of ``replicas`` (an explicit one must be already)."""
    n, batch = len(data.train), cfg.trainer.batch_size
    whole = lambda b: max(b - b % replicas, replicas)  # noqa: E731
    if batch is None and data.kind == "images":
        if n < IMAGE_BATCH:  # a small folder of images: the default must not be the error below
            log.info("%d training images, fewer than the default batch of %d: the batch is the split", n, IMAGE_BATCH)
            return whole(n)
        return IMAGE_BATCH
    if batch is None:
        return whole(table_batch(n))
    if batch > n and data.kind == "table":  # (images: an explicit error, see make_schedule)
        log.info("trainer.batch_size=%d is more than the %d training rows: the batch is the whole split", batch, n)
        return whole(n)
    return batch


def _candidates(cfg: Config, table: bool) -> int:
    """``trainer.pretrain_candidates`` (null: 2 for a table, 3 for images), or 1 where no mixture is fitted
    to choose a candidate by."""
    candidates, p = cfg.trainer.pretrain_candidates, cfg.prior
    if candidates is None:
        candidates = 2 if table else 3  # a table's third candidate cost half again and gained nothing
    if candidates > 1 and (p.kind != "gmm" or p.init == "random"):
        log.info(
            "trainer.pretrain_candidates=%d: with prior.kind=%s, prior.init=%s no mixture is fitted to choose by; "
            "one pretraining",
            candidates,
            p.kind,
            p.init,
        )
        return 1
    return candidates


def _precision(cfg: Config, data: Dataset) -> str:
    """``trainer.precision`` (null: mixed_bfloat16 where it was measured to give the recipe's clusters and
    density faster, grey-level images through the MLP on a CPU with bfloat16 units; float32 elsewhere, as
    for binarised images, whose likelihood it made worse)."""
    if cfg.trainer.precision is not None:
        return cfg.trainer.precision
    grey_mlp = data.kind == "images" and cfg.data.binarize == "none" and cfg.model.architecture == "mlp"
    if grey_mlp and not tf.config.list_physical_devices("GPU") and cpu_has_bfloat16_units():
        log.info("trainer.precision=mixed_bfloat16: this CPU has bfloat16 units (trainer.precision=float32: off)")
        return "mixed_bfloat16"
    return "float32"


def _likelihood(cfg: Config, data: Dataset) -> str:
    if cfg.model.likelihood != "auto":
        return cfg.model.likelihood
    if data.kind == "images" or data.train.binary():
        return "bernoulli"
    return "gaussian_per_feature"


def _warn_few_rows(data: Dataset) -> None:
    """One line where a table has fewer training rows than features: there the ELBO phase has undone the
    clusters pretraining found (300 rows of 784 or 5,000 features; README, "Few rows, many features")."""
    n, features = len(data.train), data.shape[0]
    if data.kind == "table" and n < features:
        log.warning(
            "%d training rows of %d features: with fewer rows than features the VAE's clusters have not been "
            "reliable (README: Few rows, many features); compare them with task=gmm task.covariance=diag's",
            n,
            features,
        )


def resolve(cfg: Config, data: Dataset, replicas: int = 1) -> Config:
    """``cfg`` with ``model.likelihood=auto``, ``model.hidden``, ``model.latent_dim``, ``trainer.batch_size``,
    ``trainer.pretrain_candidates`` and ``trainer.precision`` null, ``trainer.pretrain_choice=auto``, a batch
    larger than a table's training split, and pretraining candidates without a mixture to choose them by,
    resolved."""
    n, k = len(data.train), cfg.prior.components
    if cfg.prior.kind == "gmm" and n < k:
        raise VaemixError(f"the training split has {n} rows for prior.components={k}; use fewer components")
    if data.kind == "table" and cfg.model.architecture != "mlp":
        raise VaemixError(f"model.architecture={cfg.model.architecture!r} takes images; a table needs model=mlp")
    likelihood = _likelihood(cfg, data)
    if likelihood == "logistic" and data.kind != "images":
        raise VaemixError("model.likelihood='logistic' is for 8-bit images; a table takes gaussian_per_feature")
    table = data.kind == "table"
    hidden = cfg.model.hidden or (table_widths(data.shape[0]) if table else IMAGE_WIDTHS)
    latent = cfg.model.latent_dim or (table_latent_dim(data.shape[0]) if table else IMAGE_LATENT)
    model = replace(cfg.model, likelihood=likelihood, hidden=list(hidden), latent_dim=latent)
    choice = cfg.trainer.pretrain_choice
    if choice == "auto":
        choice = "confidence" if table else "smallest_share"
    trainer = replace(
        cfg.trainer,
        batch_size=_batch(cfg, data, replicas),
        pretrain_candidates=_candidates(cfg, table),
        pretrain_choice=choice,
        precision=_precision(cfg, data),
    )
    resolved = replace(cfg, model=model, trainer=trainer)
    _warn_few_rows(data)
    if table or likelihood != cfg.model.likelihood:
        widths = f", MLP widths {'-'.join(map(str, hidden))}" if cfg.model.architecture == "mlp" else ""
        shape = "x".join(map(str, data.shape))
        log.info(
            "model: %s likelihood%s, latent %d, batch %d (for %s of shape %s, %d training rows)",
            likelihood,
            widths,
            latent,
            resolved.trainer.batch_size,
            data.kind,
            shape,
            n,
        )
    return resolved
