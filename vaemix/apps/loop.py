"""The training loop: runs a phase's steps in stretches under a ``tf.distribute`` strategy, logging,
evaluating, drawing and checkpointing between stretches, and saving on SIGTERM."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import tensorflow as tf
from tqdm.auto import tqdm

from vaemix.apps.steps import Schedule
from vaemix.errors import Preempted
from vaemix.infra.checkpoints import Checkpoints
from vaemix.infra.config import Config
from vaemix.infra.examples import Dataset
from vaemix.infra.neighbours import Neighbours, find_neighbours
from vaemix.infra.pipeline import index_batches, train_dataset
from vaemix.infra.summaries import Summaries

log = logging.getLogger("vaemix")


@contextlib.contextmanager
def sigterm_flag():
    """While active, SIGTERM only sets ``flag["signal"]``, so the loop can save at a step boundary."""
    flag: dict[str, int | None] = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be installed from the main thread
        return

    def handler(signum: int, frame) -> None:
        flag["signal"] = signum

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class Phase:
    """One resumable phase of training: its steps, where it saves, and what runs at its epochs' ends."""

    name: str  # "pretrain" or "train": the prefix of its scalars
    schedule: Schedule
    train_steps: Callable  # see vaemix.apps.steps.make_train_step
    check_finite: Callable[[], None]
    ckpts: Checkpoints
    seed: int  # of its data order and augmentation
    views: int = 1  # augmented views per example
    on_epoch: Callable[[int], dict[str, float]] | None = None  # held-out metrics at an epoch's end
    on_picture: Callable[[int], None] | None = None


@dataclass
class Loop:
    """What both phases share: the strategy, the data, where to report."""

    strategy: tf.distribute.Strategy
    data: Dataset
    cfg: Config
    chief: bool
    summaries: Summaries

    @cached_property
    def neighbours(self) -> Neighbours | None:
        """The training rows' nearest rows for a table's second view (``data.neighbours``, which config
        validation allows only for a table's augmented views), found once for all phases."""
        return find_neighbours(self.data.train, self.cfg.data.neighbours)

    def batches(self, schedule: Schedule, start: int, seed: int, views: int = 1):
        """Iterator over the distributed ``(inputs, targets)`` batches of steps ``[start, total)``."""
        d, n = self.cfg.data, len(self.data.train)
        if self.data.kind == "images":
            augment = dict(max_shift=d.max_shift, max_rotation=d.max_rotation, max_zoom=d.max_zoom)
        else:
            augment = dict(corrupt_fraction=d.corrupt_fraction, corrupt_noise=d.corrupt_noise)
        # On a CPU the pipeline's threads take cores from the step; one thread stays ahead of it.
        threads = None if tf.config.list_physical_devices("GPU") else 1
        neighbours = self.neighbours

        def pipeline(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
            per_pipeline = schedule.replicas // ctx.num_input_pipelines
            mine = slice(ctx.input_pipeline_id * per_pipeline, (ctx.input_pipeline_id + 1) * per_pipeline)
            rows, counters = index_batches(
                n, schedule.global_batch, seed, start, schedule.total_steps, schedule.replicas, mine
            )
            return train_dataset(
                self.data.train,
                rows,
                counters,
                d.binarize,
                seed,
                augment if d.augment else None,
                views,
                threads,
                neighbours,
            )

        return iter(self.strategy.distribute_datasets_from_function(pipeline))

    def _stretch_end(self, phase: Phase, step: int) -> int:
        """The next step at which something must happen: a log line, an epoch's end, a checkpoint, a picture."""
        t = self.cfg.trainer
        periods = [t.log_every, phase.schedule.steps_per_epoch, t.checkpoint_every]
        if phase.on_picture and t.image_every:  # on every worker, so that all run the same stretches
            periods.append(t.image_every)
        return min([phase.schedule.total_steps] + [(step // p + 1) * p for p in periods])

    def _epoch_line(self, phase: Phase, done: int, loss: float, extra: dict[str, float], rate: float) -> None:
        shown = "  ".join(f"{k} {v:.3f}" for k, v in extra.items() if k.split("/")[-1] in ("elbo", "cluster_acc"))
        spe, total = phase.schedule.steps_per_epoch, phase.schedule.total_steps
        log.info(
            "%s epoch %d step %d/%d  loss %.2f  %s  (%.0f steps/s)",
            phase.name,
            -(-done // spe),
            done,
            total,
            loss,
            shown,
            rate,
        )

    def _after_stretch(self, phase: Phase, done: int, values: dict, metrics: dict, rate: float) -> dict[str, float]:
        """Log, evaluate, draw and save as the step ``done`` requires; return the latest metrics."""
        t, total = self.cfg.trainer, phase.schedule.total_steps
        epoch_end, last = done % phase.schedule.steps_per_epoch == 0, done == total
        if done % t.log_every == 0 or epoch_end or last:
            phase.check_finite()
            metrics = {f"{phase.name}/{k}": float(v) for k, v in values.items()}
            self.summaries.scalars(done, metrics)
        if epoch_end or last:
            extra = phase.on_epoch(done) if phase.on_epoch else {}
            metrics |= extra
            self._epoch_line(phase, done, metrics[f"{phase.name}/loss"], extra, rate)
        if phase.on_picture and self.chief and (last or (t.image_every and done % t.image_every == 0)):
            phase.on_picture(done)
        if done % t.checkpoint_every == 0 or last:
            phase.check_finite()  # never save a state that went non-finite
            phase.ckpts.save(done)
        return metrics

    def run(self, phase: Phase, start: int) -> dict[str, float]:
        """Steps ``[start, phase.schedule.total_steps)``, in stretches that end where something must
        happen; returns the last logged metrics."""
        total = phase.schedule.total_steps
        metrics: dict[str, float] = {}
        if start >= total:
            return metrics
        batches = self.batches(phase.schedule, start, phase.seed, phase.views)
        shown = self.cfg.trainer.progress and self.chief and sys.stderr.isatty()
        bar = tqdm(total=total, initial=start, unit="step", desc=phase.name, dynamic_ncols=True, disable=not shown)
        started, done = time.perf_counter(), start
        with sigterm_flag() as stop:
            while done < total:
                step, done = done, self._stretch_end(phase, done)
                values = phase.train_steps(batches, tf.constant(step, tf.int64), tf.constant(done - step, tf.int64))
                bar.update(done - step)
                metrics = self._after_stretch(
                    phase, done, values, metrics, (done - start) / (time.perf_counter() - started)
                )
                if f"{phase.name}/loss" in metrics:
                    bar.set_postfix(loss=f"{metrics[f'{phase.name}/loss']:.2f}")
                if stop["signal"] is not None:
                    phase.check_finite()
                    phase.ckpts.save(done)
                    bar.close()
                    raise Preempted(f"SIGTERM at {phase.name} step {done}; checkpoint saved")
        bar.close()
        self.summaries.flush()
        return metrics
