"""Checkpoints of model, prior and optimizer through ``tf.train.CheckpointManager``.

TF writes a checkpoint's data files first and the ``checkpoint`` index (atomically renamed) last, so
a run killed mid-save still restores from the previous complete checkpoint.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from vaemix.errors import VaemixError


class Checkpoints:
    """Save and restore ``trackables``; non-chief workers save to a scratch dir they delete."""

    def __init__(self, directory: str | Path, keep: int = 3, chief: bool = True, **trackables):
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.directory = Path(directory)
        self._scratch = None if chief else tempfile.mkdtemp(prefix="vaemix-worker-ckpt-")
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self._scratch or str(self.directory), max_to_keep=keep
        )
        # Every worker restores from the chief's directory.
        self._reader = tf.train.CheckpointManager(self.checkpoint, str(self.directory), max_to_keep=keep)

    @classmethod
    def for_model(cls, directory: str | Path, vae, optimizers: dict, keep: int = 3, chief: bool = True) -> Checkpoints:
        """Checkpoints of a VAE's encoder, decoder and prior plus its optimizers (by checkpoint name)."""
        return cls(directory, keep, chief, encoder=vae.encoder, decoder=vae.decoder, prior=vae.prior, **optimizers)

    @property
    def latest(self) -> str | None:
        return self._reader.latest_checkpoint

    def restore(self, path: str | None = None) -> str | None:
        """Restore ``path`` (default: the latest); return the path restored, or None for a fresh start."""
        path = path or self.latest
        if path is None:
            return None
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except (ValueError, AssertionError, IndexError, tf.errors.OpError) as e:  # IndexError: truncated file
            first = str(e).strip().splitlines()[0][:300]
            raise VaemixError(f"checkpoint {path} does not fit this model or is unreadable: {first}") from None
        return path

    def save(self, step: int) -> str:
        return self.manager.save(checkpoint_number=step)

    def close(self) -> None:
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
