"""Cluster new data with a trained run:  python predict.py run_dir=<run dir> [data=...] [predict.iwae_samples=100]

Writes <run_dir>/predictions/<name>.csv and .npz; with labels, prints ACC / NMI / ARI of the clusters.
"""

import hydra
from omegaconf import DictConfig

from vaemix.cli import main_guard
from vaemix.infra.config import register_schemas
from vaemix.infra.validation import to_predict_config

register_schemas()


def _predict(cfg: DictConfig) -> dict:
    config = to_predict_config(cfg)  # bad values fail here, before TensorFlow is imported

    from vaemix.apps.evaluation import format_table
    from vaemix.apps.prediction import predict_run

    result = predict_run(config.run_dir, config.checkpoint, config.data, config.predict)
    print(format_table(result))
    return result


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    main_guard(_predict, cfg)


if __name__ == "__main__":
    main()
