"""What the entry scripts share: quiet TF logs, the run dir, and one line for a user's mistake."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from vaemix.errors import Preempted, VaemixError

# TF prints pages of C++ start-up noise; keep warnings and errors only.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
logging.getLogger("absl").setLevel(logging.WARNING)  # TFDS logs every file it opens at INFO


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
