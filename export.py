"""Export a trained run as a TF SavedModel that needs only TensorFlow:  python export.py run_dir=<run dir>

Writes <run_dir>/export/<step>/ with model_card.json beside the SavedModel's files.
"""

import hydra
from omegaconf import DictConfig

from vaemix.cli import main_guard
from vaemix.infra.config import register_schemas
from vaemix.infra.validation import to_export_config

register_schemas()


def _export(cfg: DictConfig) -> str:
    config = to_export_config(cfg)  # bad values fail here, before TensorFlow is imported

    from vaemix.apps.export import export_run

    path = export_run(config.run_dir, config.checkpoint)
    print(f"exported to {path}  (load it with tf.saved_model.load; see model_card.json)")
    return str(path)


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    main_guard(_export, cfg)


if __name__ == "__main__":
    main()
