"""TensorBoard: scalars (grouped ``train/``, ``eval/``, ``prior/``), images, hparams and the projector."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import tensorflow as tf

from vaemix.infra.config import flatten
from vaemix.maths.priors import MixturePrior, Prior


class Summaries:
    """A TensorBoard writer that is a no-op where ``enabled`` is False (non-chief workers)."""

    def __init__(self, logdir: str | Path, enabled: bool = True):
        self.writer = tf.summary.create_file_writer(str(logdir)) if enabled else tf.summary.create_noop_writer()

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        with self.writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)

    def images(self, step: int, pictures: Mapping[str, np.ndarray], prefix: str) -> None:
        """``uint8 [H, W, 3]`` pictures as TensorBoard images named ``<prefix>/<name>``."""
        with self.writer.as_default(step=step):
            for name, picture in pictures.items():
                tf.summary.image(f"{prefix}/{name}", picture[None])

    def hparams(self, values: Mapping[str, bool | int | float | str], trial: str) -> None:
        """Record the run's config for the HParams tab (its metrics are the scalars logged anyway)."""
        from tensorboard.plugins.hparams import api as hp

        with self.writer.as_default():
            hp.hparams(dict(values), trial_id=trial)

    def flush(self) -> None:
        self.writer.flush()


def prior_scalars(prior: Prior) -> dict[str, float]:
    """``prior/weights_entropy`` (nats; log K when uniform, 0 when one component holds everything)
    and the smallest and largest mixture weight."""
    if not isinstance(prior, MixturePrior):
        return {}
    mix = prior().mixture_distribution
    probs = mix.probs_parameter()
    return {
        "prior/weights_entropy": float(mix.entropy()),
        "prior/min_weight": float(tf.reduce_min(probs)),
        "prior/max_weight": float(tf.reduce_max(probs)),
    }


def hparam_values(config: Mapping) -> dict[str, bool | int | float | str]:
    """A nested config as ``{"trainer.lr": 0.001, ...}`` with values TensorBoard's HParams tab accepts."""
    return {k: v if isinstance(v, bool | int | float | str) else str(v) for k, v in flatten(config).items()}


def write_projector(logdir: str | Path, embeddings, metadata: Mapping[str, Iterable]) -> None:
    """Latent vectors ``[N, D]`` for TensorBoard's embedding projector, with one metadata column each
    in ``metadata`` (e.g. label and component)."""
    from tensorboard.plugins import projector

    logdir = Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    columns = {k: list(v) for k, v in metadata.items()}
    with open(logdir / "metadata.tsv", "w") as f:
        f.write("\t".join(columns) + "\n")
        for row in zip(*columns.values(), strict=True):
            f.write("\t".join(str(v) for v in row) + "\n")
    tf.train.Checkpoint(embedding=tf.Variable(embeddings, name="latent_means")).save(str(logdir / "embedding.ckpt"))
    config = projector.ProjectorConfig()
    emb = config.embeddings.add()
    emb.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
    emb.metadata_path = "metadata.tsv"
    projector.visualize_embeddings(str(logdir), config)
