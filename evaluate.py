"""Evaluate a trained run:  python evaluate.py run_dir=<run dir> [checkpoint=ckpt-N] [eval.iwae_samples=N]

Prints a table and writes <run_dir>/eval/metrics.json, PNG pictures and TensorBoard summaries.
"""

import hydra
from omegaconf import DictConfig

from vaemix.cli import main_guard
from vaemix.infra.config import register_schemas
from vaemix.infra.validation import to_evaluate_config

register_schemas()


def _evaluate(cfg: DictConfig) -> dict:
    config = to_evaluate_config(cfg)  # bad values fail here, before TensorFlow is imported

    from vaemix.apps.evaluation import evaluate_run, format_table

    metrics = evaluate_run(config.run_dir, config.checkpoint, config.data, config.eval)
    print(format_table(metrics))
    return metrics


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    main_guard(_evaluate, cfg)


if __name__ == "__main__":
    main()
