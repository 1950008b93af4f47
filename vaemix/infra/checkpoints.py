"""Checkpoints of a run's model, prior and optimizers: written so that none is lost or half-read.

* ``ckpt-<step>`` files are written first (TF writes the index last), then the state file that names them,
  atomically: a run killed mid-save restores from the previous complete checkpoint.
* The newest ``keep`` checkpoints are kept, and pinned ones (``ckpt-0``: the pretrained networks with the
  fitted prior) for the run's life.
* A state file that is missing or names files that do not exist is rebuilt from the ``ckpt-*.index``
  files present: a run dir that holds checkpoints is never silently restarted from step 0.
* A damaged checkpoint (truncated, unreadable) is skipped for the newest one that reads, with a line that
  says so; a writer moves it aside to ``corrupt/``, never deletes it. One that reads but does not fit the
  model is not damage: a clear error, and nothing is moved.
* A failing write (a full disk) stops with a clear line; the previous checkpoint stays the latest.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from vaemix.errors import VaemixError
from vaemix.infra.atomic import write_text

log = logging.getLogger("vaemix")
_NAME = re.compile(r"^ckpt-(\d+)\.index$")


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def damage(prefix: str) -> str | None:
    """Why the checkpoint ``prefix`` cannot be read (every tensor is read), or None if it can."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (tf.errors.OpError, ValueError, IndexError, OSError) as e:
        return _first_line(e)
    return None


class Checkpoints:
    """Save and restore ``trackables`` in ``directory``; non-chief workers save to a scratch dir they delete.
    ``writer=False`` (evaluation, prediction, export) reads only: it never moves or deletes a file."""

    def __init__(
        self,
        directory: str | Path,
        keep: int = 3,
        chief: bool = True,
        pinned: tuple[int, ...] = (),
        writer: bool = True,
        **trackables,
    ):
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.checkpoint.save_counter  # noqa: B018  (created now, so written and matched like every variable)
        self.directory, self.keep, self.pinned, self.writer = Path(directory), keep, set(pinned), writer
        self._scratch = None if chief else Path(tempfile.mkdtemp(prefix="vaemix-worker-ckpt-"))

    @classmethod
    def for_model(
        cls, directory: str | Path, vae, optimizers: dict, keep: int = 3, chief: bool = True, writer: bool = True
    ) -> Checkpoints:
        """Checkpoints of a VAE's encoder, decoder and prior plus its optimizers (by checkpoint name), with
        ``ckpt-0`` (the pretrained networks and the fitted prior) pinned."""
        return cls(
            directory,
            keep,
            chief,
            (0,),
            writer,
            encoder=vae.encoder,
            decoder=vae.decoder,
            prior=vae.prior,
            **optimizers,
        )

    # -- which checkpoints there are ---------------------------------------------------------------------

    def _prefix(self, step: int, directory: Path | None = None) -> str:
        return str((directory or self.directory) / f"ckpt-{step}")

    def _present(self) -> list[int]:
        """Steps of the ``ckpt-*.index`` files in the directory, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.directory.iterdir() if (m := _NAME.match(p.name)))

    def steps(self, quiet: bool = False) -> list[int]:
        """Steps of the checkpoints the state file names, oldest first; rebuilt from the files present when
        the state file is missing or names files that do not exist (with a warning, unless ``quiet``: a
        save that is about to write the state file)."""
        present = self._present()
        state = tf.train.get_checkpoint_state(str(self.directory)) if self.directory.is_dir() else None
        listed = [] if state is None else [int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths]
        if listed and set(listed) <= set(present):
            return sorted(listed)
        if present and not quiet:
            why = "missing" if state is None else "names checkpoints that are not there"
            log.warning(
                "%s: the checkpoint state file is %s; using the %d checkpoint(s) present: %s",
                self.directory,
                why,
                len(present),
                ", ".join(f"ckpt-{s}" for s in present),
            )
            if self.writer:
                self._write_state(present)
        return present

    def _write_state(self, steps: list[int]) -> None:
        """The state file TF's readers expect (a text proto of paths relative to the directory), atomically."""
        lines = [
            f'model_checkpoint_path: "ckpt-{steps[-1]}"',
            *(f'all_model_checkpoint_paths: "ckpt-{s}"' for s in steps),
        ]
        write_text(self.directory / "checkpoint", "\n".join(lines) + "\n")

    @property
    def latest(self) -> str | None:
        steps = self.steps()
        return self._prefix(steps[-1]) if steps else None

    # -- restoring ---------------------------------------------------------------------------------------

    def _move_aside(self, prefix: str) -> None:
        corrupt = self.directory / "corrupt"
        corrupt.mkdir(exist_ok=True)
        for path in self.directory.glob(Path(prefix).name + ".*"):
            shutil.move(str(path), corrupt / path.name)

    def _restore(self, prefix: str) -> None:
        try:
            self.checkpoint.restore(prefix).assert_existing_objects_matched()
        except (ValueError, AssertionError) as e:
            raise VaemixError(
                f"checkpoint {prefix} does not fit this model (saved by another model or vaemix version; train "
                f"again into a new run dir): {_first_line(e)}"
            ) from None

    def restore(self, path: str | None = None) -> str | None:
        """Restore ``path`` (default: the newest readable checkpoint); return it, or None for a fresh start."""
        if path is not None:
            if why := damage(path):
                raise VaemixError(f"checkpoint {path} is unreadable: {why}")
            self._restore(path)
            return path
        steps, skipped = self.steps(), []
        for step in reversed(steps):
            prefix = self._prefix(step)
            if not Path(prefix + ".index").exists():
                continue  # rotated away by the writer since the state file was read: the next newest
            if why := damage(prefix):
                skipped.append(prefix)
                log.warning(
                    "checkpoint %s is damaged (%s); %s", prefix, why, "moved to corrupt/" if self.writer else "skipped"
                )
                if self.writer:
                    self._move_aside(prefix)
                continue
            self._restore(prefix)
            if skipped and self.writer:
                self._write_state([s for s in steps if self._prefix(s) not in skipped])
            return prefix
        if skipped:
            raise VaemixError(
                f"{self.directory}: no checkpoint can be read ({len(skipped)} damaged); start again "
                "with trainer.overwrite=true, which moves the old files aside"
            )
        return None

    # -- saving ------------------------------------------------------------------------------------------

    def save(self, step: int) -> str:
        """Write ``ckpt-<step>``, then name it in the state file; drop the oldest beyond ``keep`` (pinned
        ones stay)."""
        directory = self._scratch or self.directory
        prefix = self._prefix(step, directory)
        previous = self.latest
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.checkpoint.write(prefix)
            if self._scratch:
                return prefix
            steps = sorted(set(self.steps(quiet=True)) | {step})
            kept = [s for s in steps if s in self.pinned or s in steps[-self.keep :]]
            self._write_state(kept)
        except (OSError, tf.errors.OpError) as e:
            kept_line = f"the latest checkpoint is still {previous}" if previous else "no checkpoint was kept"
            raise VaemixError(f"could not write checkpoint {prefix}: {_first_line(e)}; {kept_line}") from None
        for old in set(steps) - set(kept):
            for path in directory.glob(f"ckpt-{old}.*"):
                path.unlink(missing_ok=True)
        return prefix

    def close(self) -> None:
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
