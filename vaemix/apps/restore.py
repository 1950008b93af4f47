"""Rebuilding a run's model from its own config and restoring a checkpoint into it."""

from __future__ import annotations

from pathlib import Path

from vaemix.apps.state import build_state
from vaemix.errors import VaemixError
from vaemix.infra.checkpoints import Checkpoints
from vaemix.infra.config import Config
from vaemix.infra.datasets import load_dataset
from vaemix.infra.rundir import load_run_config, read_data_record
from vaemix.maths.vae import VAE


def restore_run(
    run_dir: str | Path, shape: tuple[int, ...], checkpoint: str | None = None
) -> tuple[Config, VAE, str, int]:
    """Rebuild the run's model for examples of ``shape`` and restore ``checkpoint`` (default: the newest
    that reads; a reader never moves or deletes a checkpoint).

    Returns the run's config, the model, the checkpoint path and its training step.
    """
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    state = build_state(cfg, shape, steps_per_epoch=1)
    ckpts = Checkpoints.for_model(run_dir / "checkpoints", state.vae, state.optimizers, writer=False)
    path = None
    if checkpoint is not None:
        path = str(run_dir / "checkpoints" / checkpoint)
        if not Path(path + ".index").is_file():
            raise VaemixError(f"no checkpoint {checkpoint!r} in {run_dir / 'checkpoints'}")
    path = ckpts.restore(path)  # the newest that reads, without moving any (a training may be writing)
    if path is None:
        raise VaemixError(f"{run_dir} has no checkpoint yet")
    return cfg, state.vae, path, int(state.optimizer.iterations.numpy())


def run_record(run_dir: str | Path, cfg: Config) -> dict:
    """The run's ``data.json``; for a run from before it was written, what its training data say."""
    return read_data_record(run_dir, missing_ok=True) or load_dataset(cfg.data, cfg.seed)[1]
