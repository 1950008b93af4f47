"""What the entry scripts share: quiet TF logs, the run dir, one line for a user's mistake, and the last line
of a training run."""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra._internal.utils as hydra_utils
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from omegaconf import DictConfig

from vaemix.errors import Preempted, VaemixError

# TF prints pages of C++ start-up noise; keep warnings and errors only.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
logging.getLogger("absl").setLevel(logging.WARNING)  # TFDS logs every file it opens at INFO


_NOISE = ("full_key:", "object_type=", "reference_type=", "Set the environment variable", "To append to your config")


def one_line(error: BaseException) -> str:
    """Hydra's multi-line composition error (and its OmegaConf cause) as one line."""
    text = "\n".join(str(part) for part in (error, error.__cause__) if part).split("Config search path:")[0]
    lines = [line.strip().rstrip(".") for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith(_NOISE)]
    if any(line.startswith("Available options in") for line in lines):  # a group option that does not exist
        i = next(i for i, line in enumerate(lines) if line.startswith("Available options in"))
        options = [o for o in lines[i + 1 :] if o != "base"]  # "base" is the group's schema, not an option
        return f"{'; '.join(lines[:i])}; {lines[i].rstrip(':').lower()}: {', '.join(options)}"
    return "; ".join(lines)


_hydra_report = hydra_utils.run_and_report


def _unchosen_group(argv: list[str]) -> str | None:
    """The line for an override such as ``data.path=x`` when the command leaves the ``data`` group empty
    (predict.py, evaluate.py): OmegaConf fails on it with a bare assertion."""
    chosen = {a.split("=", 1)[0].lstrip("+~") for a in argv if "=" in a}
    for arg in argv:
        key = arg.split("=", 1)[0].lstrip("+~")
        group = key.split(".", 1)[0]
        if "." in key and group not in chosen and group != "hydra":
            conf = Path(sys.argv[0]).resolve().parent / "conf" / group  # beside the entry script
            options = sorted(p.stem for p in conf.glob("*.yaml") if p.stem != "base") or ["..."]
            return (
                f"{key} sets a key of the {group!r} group, which this command leaves empty; choose one first: "
                f"{group}={' | '.join(options)}"
            )
    return None


def _in_our_code(error: BaseException) -> bool:
    """Whether ``error`` was raised inside vaemix's work (below :func:`main_guard`), not by Hydra before it."""
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is main_guard.__code__:
            return True
        tb = tb.tb_next
    return False


def _report(func: Callable[[], Any]) -> Any:
    """Hydra's reporter, except that a composition error (a bad key, value or group option on the command
    line) is one line on stderr and exit status 2, like vaemix's own checks."""
    try:
        return func()
    except CompactHydraException as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)
    except AssertionError as e:
        line = None if _in_our_code(e) else _unchosen_group(sys.argv[1:])
        if line is None:
            error = e
        else:
            print(f"error: {line}", file=sys.stderr)
            sys.exit(2)
    except OSError as e:
        if _in_our_code(e):  # a bug or a fault in vaemix itself: Hydra's report, with the traceback
            error = e
        else:  # Hydra could not create the run dir (it is a file, or not writable)
            print(f"error: cannot use {e.filename or 'the run dir'} as the run dir: {e.strerror or e}", file=sys.stderr)
            sys.exit(2)
    except Exception as e:  # noqa: BLE001  (Hydra's own report of anything else)
        error = e
    return _hydra_report(lambda: (_ for _ in ()).throw(error))


hydra_utils.run_and_report = _report  # Hydra calls it by this module-level name


def run_dir() -> str:
    """The run directory: Hydra's output dir (``hydra.run.dir=...`` sets it)."""
    return HydraConfig.get().runtime.output_dir


def main_guard(fn: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run ``fn(cfg)``; a :class:`VaemixError` becomes one line on stderr and exit status 2. Any other
    exception, a plain ``ValueError`` included, is a bug and keeps its traceback."""
    try:
        return fn(cfg)
    except VaemixError as e:
        logging.getLogger("vaemix").error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Preempted as e:
        print(f"stopped: {e}; rerun the same command to resume", file=sys.stderr)
        sys.exit(143)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume from the latest checkpoint", file=sys.stderr)
        sys.exit(130)


def done_line(metrics: dict[str, Any], where: str) -> str:
    """``train.py``'s last line: the step, the held-out ELBO and the label-free cluster signals."""
    clusters = ""
    if "separation" in metrics:
        separation = metrics["separation"]
        # A silhouette needs two clusters: say so rather than print nan.
        shown = "n/a (one cluster holds every test example)" if math.isnan(separation) else f"{separation:.3f}"
        clusters = (
            f", cluster separation {shown}, confidence {metrics['confidence']:.3f} and smallest "
            f"cluster {metrics['smallest_share']:.3f} (label-free)"
        )
    return f"done: step {metrics['step']}, eval ELBO {metrics['elbo']:.2f} nats{clusters}; run dir {where}"
