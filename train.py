"""Train a Gaussian-mixture-prior VAE:  python train.py [group=option] [key=value ...]

Rerunning with the same ``hydra.run.dir`` resumes from the run's latest checkpoint.
"""

import sys

import hydra
from omegaconf import DictConfig

from vaemix.cli import done_line, main_guard, run_dir
from vaemix.errors import VaemixError
from vaemix.infra.config import register_schemas
from vaemix.infra.validation import to_config

register_schemas()


def _train(cfg: DictConfig) -> dict:
    config = to_config(cfg)  # bad values fail here, before TensorFlow is imported

    if config.task.kind != "vae":
        from vaemix.apps.toolkit import fit_task

        metrics = fit_task(config, run_dir(), command=sys.argv)
        print(f"done: {config.task.kind}; metrics in {run_dir()}/metrics.json")
        return metrics
    from vaemix.apps.training import train

    metrics = train(config, run_dir(), command=sys.argv)
    print(done_line(metrics, run_dir()))
    return metrics


def _objective(cfg: DictConfig) -> float | None:
    """The run's ``optimized_metric``, for a Hydra sweeper (None when not asked for)."""
    metrics, name = _train(cfg), cfg.get("optimized_metric")
    if name is None:
        return None
    if name not in metrics:
        raise VaemixError(f"optimized_metric={name} is not among this run's metrics: {', '.join(sorted(metrics))}")
    return float(metrics[name])


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    return main_guard(_objective, cfg)


if __name__ == "__main__":
    main()
