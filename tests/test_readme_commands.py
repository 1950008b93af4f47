"""Every shell command in README.md, run as a user runs it: a fresh process with a clean environment (no
conftest device setup, a new HOME), placeholders filled with small files made here, and tiny overrides
appended so that each finishes in seconds. A command that needs the network must fail fast with its
documented error. Commands that cannot run here are on ``SKIPPED`` with their reason, and a command that
is neither run nor skipped fails the test, so the README cannot gain an untested command."""

from __future__ import annotations

import gzip
import os
import re
import shlex
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, compose_config

SKIPPED = {
    "pytest": "the test command itself; CI runs it",
    "pip install": "the set-up; .ci/run installs on a clean checkout exactly so",
    "tensorboard": "a server that runs until it is stopped",
    "TF_CONFIG=": "needs two machines; tests/test_fault_tolerance.py runs two workers on 127.0.0.1",
    "python benchmarks/": "benchmarks run for minutes to hours; they are run by hand and their results committed",
    "python train.py -m hparams_search=": "a sweep of full runs; tests/test_sweep.py runs it with two tiny trials",
}
SCRIPTS = ("train.py", "evaluate.py", "predict.py", "export.py")
TOOLS = ("ruff", "lint-imports")
OFFLINE = ("mnist5k", "local", "blobs", "table")  # data that needs no network
TIMEOUT = 150


def readme_commands(text: str) -> list[str]:
    """Each command line of the README's ``bash`` blocks: continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+", " ", re.sub(r"\s+#.*$", "", line)).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def parts(line: str) -> list[str]:
    """The commands of a line, ``a && b`` run one after the other."""
    return [part.strip() for part in line.split("&&")]


def skip_reason(line: str) -> str | None:
    """Why a line is not run: the reason of its first part that is skipped, if all of them are."""
    reasons = [next((r for prefix, r in SKIPPED.items() if part.startswith(prefix)), None) for part in parts(line)]
    return reasons[0] if all(reasons) else None


def runnable(line: str) -> list[str]:
    return [p for p in parts(line) if not any(p.startswith(prefix) for prefix in SKIPPED)]


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _placeholder_files(d: Path) -> dict[str, str]:
    """The files the README's placeholders stand for: 28x28 digit-like images, tables, a run dir."""
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, size=(120, 28, 28)), rng.integers(0, 3, size=120)
    _write_idx(d / "images.gz", images)
    _write_idx(d / "labels.gz", labels)
    np.savez(d / "mydata.npz", x=images.astype(np.uint8), y=labels)
    points = np.concatenate([rng.normal(size=(150, 2)), rng.normal(size=(150, 2)) + 5])
    np.savetxt(d / "points.csv", points, delimiter=",", header="a,b", comments="")
    np.savetxt(d / "pairs.csv", np.c_[points, points[:, :1] ** 2], delimiter=",")
    np.savetxt(d / "features.csv", points, delimiter=",", header="a,b", comments="")
    (d / "plants.csv").write_text("a,b,site,species\n" + "".join(
        f"{p[0]:.3f},{p[1]:.3f},{'north' if i % 3 else 'south'},s{i % 2}\n" for i, p in enumerate(points)))  # fmt: skip
    np.save(d / "embeddings.npy", np.tile(points, (1, 4)).astype(np.float32))
    np.savez(d / "colour.npz", x=rng.integers(0, 256, size=(80, 12, 10, 3), dtype=np.uint8))
    for i, image in enumerate(images[:40]):
        folder = d / "photos" / f"class{labels[i]}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.astype(np.uint8)).resize((20 + i % 2, 20)).save(folder / f"{i}.png")
    named = {name: str(d / name) for name in ("features.csv", "plants.csv", "embeddings.npy", "colour.npz")}
    return named | {
        "idx_images": str(d / "images.gz"),
        "idx_labels": str(d / "labels.gz"),
        "npz": str(d / "mydata.npz"),
        "points": str(d / "points.csv"),
        "pairs": str(d / "pairs.csv"),
        "photos/": str(d / "photos"),
    }


def fill(args: list[str], files: dict[str, str], run_dir: str, scratch: Path) -> list[str]:
    """The README's placeholders replaced by real paths (every run dir goes under ``scratch``)."""
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if key == "run_dir":  # a placeholder is the tiny trained run; a path the line itself trains is its own
            value = run_dir if value.startswith(("outputs/", "<")) or "..." in value else str(scratch / value)
        elif key == "checkpoint":
            value = "ckpt-2"  # what the tiny run saved last
        elif key == "hydra.run.dir":
            value = str(scratch / value.strip("/"))
        elif value in files:  # a file the README names by its own name
            value = files[value]
        elif key in ("data.images", "data.labels", "data.test_images"):
            value = files["idx_labels"] if key == "data.labels" else files["idx_images"]
            value = files["npz"] if arg.endswith(".npz") else value
        elif key == "data.path":
            value = files["pairs"] if "pairs" in arg else files["points"]
        out.append(f"{key}={value}" if sep else arg)
    return out


def tiny(script: str, args: list[str]) -> list[str]:
    """Overrides that make the command finish in seconds, chosen from the config it composes."""
    if script == "evaluate.py":
        return ["eval.iwae_samples=10", "eval.max_examples=100"]
    if script == "predict.py":
        return ["predict.iwae_samples=3"] if any(a.startswith("predict.iwae_samples") for a in args) else []
    if script == "export.py":
        return []
    cfg = compose_config(*[a for a in args if not a.startswith("hydra.")])
    if cfg.task.kind != "vae":
        return ["data.n=300", "task.n_init=1", "task.epochs=2", "task.num_results=20", "task.num_burnin=20"]
    out = [
        "model.hidden=[16]",
        "model.filters=[4]",
        "model.conv_dense=8",
        "model.latent_dim=2",
        "prior.components=3",
        "prior.init_restarts=2",
        "trainer.batch_size=16",
        "trainer.max_steps=2",
        "trainer.progress=false",
        "trainer.jit=false",
    ]  # trainer.jit=false: XLA has tests of its own
    if cfg.trainer.pretrain_epochs:
        out.append("trainer.pretrain_epochs=1")
    return out


def _argv(command: str, files: dict[str, str], run_dir: str, scratch: Path) -> tuple[list[str], bool]:
    """The command line to run and whether it must fail for want of a network."""
    words = shlex.split(command)
    if words[0] in TOOLS:
        return words, False
    assert words[0] == "python" and words[1] in SCRIPTS, f"README command neither run nor skipped: {command}"
    args = fill(words[2:], files, run_dir, scratch)
    overrides = [a for a in args if not a.startswith("hydra.")]
    offline = words[1] != "train.py" or compose_config(*overrides).data.name in OFFLINE
    hydra = [] if any(a.startswith("hydra.run.dir=") for a in args) else [f"hydra.run.dir={scratch / 'runs'}"]
    hydra = hydra if words[1] == "train.py" else []
    return [sys.executable, str(ROOT / words[1]), *args, *tiny(words[1], args), *hydra], not offline


def _run(argvs: list[list[str]], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run the commands of a line one after the other, stopping at the first that fails."""
    t0 = time.perf_counter()
    for argv in argvs:
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        if done.returncode:
            break
    return done, time.perf_counter() - t0


COMMANDS = readme_commands((ROOT / "README.md").read_text())


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, tuple]:
    """Every runnable README command's ``(argv, needs network, result, seconds)``, run two at a time."""
    base = tmp_path_factory.mktemp("readme")
    files = _placeholder_files(base)
    env = {"PATH": os.environ["PATH"], "HOME": str(base / "home"), "LANG": "C.UTF-8"}
    run_dir = str(base / "scratch0" / "runs")
    jobs = {}
    for i, line in enumerate(c for c in COMMANDS if not skip_reason(c)):
        scratch = base / f"scratch{i}"
        commands = [_argv(part, files, run_dir, scratch) for part in runnable(line)]
        jobs[line] = ([argv for argv, _ in commands], any(network for _, network in commands))
    first = next(iter(jobs))  # python train.py: prepares mnist5k in the new HOME and makes the run dir
    out = {first: (*jobs[first], *_run(jobs[first][0], env))}
    with ThreadPoolExecutor(2) as pool:
        futures = {c: pool.submit(_run, argvs, env) for c, (argvs, _) in jobs.items() if c != first}
        out |= {c: (*jobs[c], *f.result()) for c, f in futures.items()}
    return out


def test_the_readme_opens_with_the_two_set_up_commands():
    assert COMMANDS[:2] == ["pip install -e '.[dev]' && python train.py", "pytest"]


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command(command, results):
    if reason := skip_reason(command):
        pytest.skip(reason)
    argvs, needs_network, done, seconds = results[command]
    if needs_network:  # no network here: the documented one-line error, fast
        assert done.returncode == 2 and "could not download dataset" in done.stderr, done.stderr[-1500:]
        assert "Traceback" not in done.stderr and seconds < 60
    else:
        assert done.returncode == 0, f"{[shlex.join(a) for a in argvs]}\n{done.stderr[-3000:]}"


def test_commands_are_found_and_every_one_is_run_or_skipped():
    assert len(COMMANDS) >= 15
    for command in (p for line in COMMANDS for p in runnable(line)):
        words = shlex.split(command)
        assert words[0] in TOOLS or words[1] in SCRIPTS, command


def test_the_extractor_joins_lines_drops_comments_and_keeps_chains():
    text = "```bash\npython train.py a=1 \\\n  b=2   # note\n# only a comment\nx && y\n```\n```python\nno\n```"
    assert readme_commands(text) == ["python train.py a=1 b=2", "x && y"]
    assert parts("x && y") == ["x", "y"] and runnable("pip install a && python train.py") == ["python train.py"]
    assert skip_reason("pytest && pip install x") == SKIPPED["pytest"] and skip_reason("pytest && x") is None
