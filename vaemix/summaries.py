"""TensorBoard scalars (grouped ``train/``, ``eval/``, ``prior/``) and the run's ``metrics.json``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import tensorflow as tf

from vaemix.priors import MixturePrior, Prior


class Summaries:
    """A TensorBoard writer that is a no-op where ``enabled`` is False (non-chief workers)."""

    def __init__(self, logdir: str | Path, enabled: bool = True):
        self.writer = tf.summary.create_file_writer(str(logdir)) if enabled else tf.summary.create_noop_writer()

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        with self.writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)

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


def write_json(path: str | Path, values: Mapping) -> None:
    """Write ``values`` as JSON atomically: a reader sees the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(dict(values), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
