"""Soak a run dir: cycles of train / SIGKILL at a random moment / resume, with faults injected.

    python benchmarks/soak.py                  # 50 cycles (~15 min on 2 cores)
    python benchmarks/soak.py --cycles 5

Every ``--fault-every`` cycles one fault is injected before the resume, in turn: the newest checkpoint's
data file truncated, the checkpoint state file deleted, a second ``train.py`` started on the same run dir
while the first trains (it must be refused). After the cycles the run is finished, and its final step
and weights are compared with an undisturbed run of the same command (op determinism on, so "equal" means
bit for bit). Prints the cycles, faults, losses and the verdicts, and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
FAULTS = ("truncate newest checkpoint", "delete state file", "second writer")


def _command(run_dir: Path, steps: int) -> list[str]:
    return [
        sys.executable,
        "train.py",
        "experiment=plain",
        "model.hidden=[64]",
        "model.latent_dim=4",
        "prior.components=5",
        "trainer.batch_size=100",
        f"trainer.max_steps={steps}",
        "trainer.checkpoint_every=25",
        "trainer.log_every=5",
        "trainer.image_every=0",
        "trainer.progress=false",
        "trainer.deterministic=true",
        f"hydra.run.dir={run_dir}",
    ]


def _steps(run_dir: Path) -> list[int]:
    return sorted(int(p.name[5:-6]) for p in (run_dir / "checkpoints").glob("ckpt-*.index"))


def _inject(fault: str, run_dir: Path, steps: int) -> str:
    ckpts = run_dir / "checkpoints"
    if fault == "truncate newest checkpoint" and len(_steps(run_dir)) > 1:  # an older one to fall back to
        data = next(ckpts.glob(f"ckpt-{_steps(run_dir)[-1]}.data-*"))
        data.write_bytes(data.read_bytes()[: len(data.read_bytes()) // 3])
        return f"truncated {data.name}"
    if fault == "delete state file" and (ckpts / "checkpoint").exists():
        (ckpts / "checkpoint").unlink()
        return "deleted checkpoints/checkpoint"
    if fault == "second writer":
        first = subprocess.Popen(
            _command(run_dir, steps), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        while first.poll() is None:  # until the lock names the first process (a killed one leaves its file)
            try:
                if json.loads((run_dir / "train.lock").read_text())["pid"] == first.pid:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        second = subprocess.run(_command(run_dir, steps), cwd=ROOT, env=ENV, capture_output=True, text=True)
        refused = second.returncode == 2 and "is being trained by" in second.stderr
        first.kill()
        first.wait()
        return "second writer refused" if refused else f"SECOND WRITER NOT REFUSED (exit {second.returncode})"
    return "nothing to damage yet"


def _weights(run_dir: Path) -> dict[str, np.ndarray]:
    import tensorflow as tf

    path = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    return {n: reader.get_tensor(n) for n, _ in tf.train.list_variables(path) if "VARIABLE_VALUE" in n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--fault-every", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20_000)  # more than 50 short cycles can train
    parser.add_argument("--work", default="/tmp/vaemix-bench-soak")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "soak.json"))
    args = parser.parse_args()
    work, rng = Path(args.work), random.Random(0)
    shutil.rmtree(work, ignore_errors=True)
    run, events = work / "run", []
    for cycle in range(1, args.cycles + 1):
        proc = subprocess.Popen(
            _command(run, args.steps), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        time.sleep(rng.uniform(4.0, 14.0))  # TF's start is ~5 s: kills land in start-up, steps, saves, evaluation
        proc.kill()
        proc.wait()
        event = {"cycle": cycle, "checkpoints": _steps(run) if (run / "checkpoints").exists() else []}
        if cycle % args.fault_every == 0:
            event["fault"] = _inject(FAULTS[(cycle // args.fault_every - 1) % len(FAULTS)], run, args.steps)
        events.append(event)
        print(f"cycle {cycle:3d}: checkpoints {event['checkpoints']}  {event.get('fault', '')}", flush=True)
    final = subprocess.run(_command(run, args.steps), cwd=ROOT, env=ENV, capture_output=True, text=True)
    straight = subprocess.run(
        _command(work / "straight", args.steps), cwd=ROOT, env=ENV, capture_output=True, text=True
    )
    if final.returncode or straight.returncode:
        raise RuntimeError(f"final runs failed:\n{final.stderr[-2000:]}\n{straight.stderr[-2000:]}")
    step = json.loads((run / "metrics.json").read_text())["step"]
    a, b = _weights(run), _weights(work / "straight")
    exact = a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    faults = [e["fault"] for e in events if "fault" in e]
    losses = sum("NOT REFUSED" in f for f in faults) + (step != args.steps) + (not exact)
    result = {
        "cycles": args.cycles,
        "faults": faults,
        "final_step": step,
        "requested_steps": args.steps,
        "weights_equal_undisturbed": exact,
        "losses": losses,
        "events": events,
    }
    print(
        f"\n{args.cycles} cycles, {len(faults)} faults injected ({', '.join(sorted(set(faults)))}); final step "
        f"{step} of {args.steps}; weights equal to an undisturbed run's: {exact}; losses: {losses}"
    )
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
