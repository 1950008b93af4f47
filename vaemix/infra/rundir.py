"""A run directory's records: its config (``run_config.yaml``, read back as data, and the resume guard),
what data it was trained on (``data.json``), and the commands that trained it (``commands.log``)."""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vaemix.errors import VaemixError
from vaemix.infra.atomic import write_text
from vaemix.infra.config import Config, flatten
from vaemix.infra.validation import validate

RUN_CONFIG = "run_config.yaml"  # the config of record, written by the run's first start
DATA_RECORD = "data.json"  # what the model takes: shape, preprocessing, labels (see write_data_record)
COMMANDS = "commands.log"  # every train.py command that ran in the run dir, one a line

# What must not change when a run dir is resumed: the checkpoint and the data order depend on them.
FIXED_KEYS = ("model", "prior", "data", "seed", "trainer.batch_size", "trainer.pretrain_epochs")


def _has_target(node) -> bool:
    if isinstance(node, dict):
        return "_target_" in node or any(_has_target(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_target(v) for v in node)
    return False


def load_run_config(run_dir: str | Path) -> Config:
    """The run's own config (``run_config.yaml``, else Hydra's ``.hydra/config.yaml``), read as data
    against vaemix's schema, never instantiated."""
    path = Path(run_dir) / RUN_CONFIG
    if not path.is_file():
        path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.is_file():
        raise VaemixError(f"{run_dir} is not a vaemix run dir (no {RUN_CONFIG} or .hydra/config.yaml)")
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path))
        if not isinstance(raw, dict):
            raise VaemixError(f"{path} is not a vaemix config: it holds a {type(raw).__name__}, not a mapping")
        if _has_target(raw):
            raise VaemixError(f"{path} names a _target_; vaemix run configs never do, refusing to use it")
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), raw))
    except OmegaConfBaseException as e:
        raise VaemixError(f"{path} is not a vaemix config: {str(e).splitlines()[0]}") from None
    except yaml.YAMLError as e:  # e.g. a !!python/object tag: only plain YAML is read, nothing is executed
        raise VaemixError(f"{path} is not plain YAML: {str(e).splitlines()[0]}") from None
    return validate(cfg)  # type: ignore[arg-type]


def _fixed(cfg: Config) -> dict:
    flat = flatten(asdict(cfg))
    return {k: v for k, v in flat.items() if any(k == key or k.startswith(f"{key}.") for key in FIXED_KEYS)}


def set_aside(run_dir: Path) -> Path | None:
    """Move everything in ``run_dir`` (but the lock and earlier set-asides) into ``previous-<time>/``."""
    entries = (
        [p for p in run_dir.iterdir() if p.name != "train.lock" and not p.name.startswith("previous-")]
        if (run_dir.is_dir())
        else []
    )
    if not entries:
        return None
    aside = run_dir / f"previous-{time.strftime('%Y%m%d-%H%M%S')}"
    aside.mkdir()
    for path in entries:
        path.rename(aside / path.name)
    return aside


def check_run_config(run_dir: Path, cfg: Config, write: bool = True) -> None:
    """On a run dir's first start, record its config in ``run_config.yaml``; on a resume, refuse a config
    whose model, prior, data, seed or batch differ from the record (the checkpoint would not fit, or
    the data order would change), naming every differing key."""
    path = run_dir / RUN_CONFIG
    if path.is_file():
        old, new = _fixed(load_run_config(run_dir)), _fixed(cfg)
        diffs = [f"{k}={old.get(k)!r} (now {v!r})" for k, v in new.items() if old.get(k) != v]
        if diffs:
            raise VaemixError(
                f"{run_dir} was trained with {', '.join(diffs)}; resume with the same values or choose another "
                "hydra.run.dir"
            )
    elif write:
        write_text(path, yaml.safe_dump(asdict(cfg), sort_keys=False))


def write_data_record(run_dir: Path, record: dict) -> None:
    """Record what the model takes (``kind``, ``shape`` and the preprocessing fitted on the training data),
    so that evaluation, prediction and export apply exactly the same without reloading the training data."""
    write_text(run_dir / DATA_RECORD, json.dumps(record, indent=2) + "\n")


def read_data_record(run_dir: str | Path, missing_ok: bool = False) -> dict | None:
    path = Path(run_dir) / DATA_RECORD
    if missing_ok and not path.is_file():
        return None
    if not path.is_file():
        raise VaemixError(f"{run_dir} has no {DATA_RECORD}; train it (or rerun its train.py command once) first")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise VaemixError(f"{path} is not readable JSON ({e})") from None


def record_command(run_dir: Path, argv: list[str] | None = None) -> None:
    """Append the command that is training the run (``sys.argv`` by default) to ``commands.log``."""
    argv = sys.argv if argv is None else argv
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')}  python {shlex.join([Path(argv[0]).name, *argv[1:]])}\n"
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / COMMANDS, "a") as f:
        f.write(line)


def recorded_commands(run_dir: str | Path) -> list[str]:
    """The commands of ``commands.log``, oldest first, without their times."""
    path = Path(run_dir) / COMMANDS
    lines = path.read_text().splitlines() if path.is_file() else []
    return [line.split("  ", 1)[1] for line in lines if "  " in line]
