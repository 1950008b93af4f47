"""The data a ``DataConfig`` names, whatever its kind: image datasets or tables, as a :class:`Dataset`,
with the record (``data.json``) that lets evaluation, prediction and export read new data as training did."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np

from vaemix.errors import VaemixError
from vaemix.infra.config import DataConfig
from vaemix.infra.examples import Dataset, Examples, Preprocessing
from vaemix.infra.images import load_image_split, load_images
from vaemix.infra.tables import TableSpec, check_values, read_table, table_dataset

TABLES = ("table",)


def is_table(d: DataConfig) -> bool:
    return d.name in TABLES


def load_dataset(d: DataConfig, seed: int = 0, record: dict | None = None) -> tuple[Dataset, dict]:
    """Training and held-out examples, and the record of what the model takes (``data.json``). With a
    run's ``record`` (a resume), a table is read and scaled as that record says, not fitted again."""
    if not is_table(d):
        data = load_images(d, seed)
        record = {"kind": "images", "name": d.name, "binarize": d.binarize, "image_size": d.image_size}
    elif record is not None:
        data, spec = table_dataset(d, TableSpec.from_record(record), Preprocessing.from_record(record["preprocessing"]))
        record = {"kind": "table", "name": d.name, "path": d.path, **asdict(spec)}
    else:
        data, spec = table_dataset(d)
        record = {"kind": "table", "name": d.name, "path": d.path, **asdict(spec)}
    record |= {
        "shape": list(data.shape),
        "preprocessing": data.train.preprocessing.record(),
        "labels": data.train.labels is not None,
        "num_train": len(data.train),
        "num_test": len(data.test),
    }
    return data, record


def load_examples(d: DataConfig, split: str, record: dict, seed: int = 0) -> Examples:
    """Examples of new data read as the run's training data were (``record``): one split (``train`` or
    ``test``, as training split them) or ``all`` of it in file order."""
    if (record["kind"] == "table") != is_table(d):
        raise VaemixError(
            f"this run was trained on {record['kind']}; data={d.name} holds {'a table' if is_table(d) else 'images'}"
        )
    if record["kind"] == "images":
        if d.image_size is None and record.get("image_size"):  # a folder's images resized as training's were
            d = replace(d, image_size=record["image_size"])
        examples = _as_colour(load_image_split(d, split, seed), record["shape"])
    else:
        pre = Preprocessing.from_record(record["preprocessing"])
        if split == "all":
            table = read_table(d, TableSpec.from_record(record))
            check_values(table, d)
            examples = Examples(table.values, pre, labels=table.labels)
        else:
            data, _ = table_dataset(d, TableSpec.from_record(record), pre)
            examples = data.train if split == "train" else data.test
    if tuple(examples.shape) != tuple(record["shape"]):
        if record["kind"] == "table":
            raise VaemixError(
                f"{d.path} does not fit this model: it has {examples.shape[0]} features, the model "
                f"takes {record['shape'][0]} ({', '.join(record['columns'])})"
            )
        raise VaemixError(
            f"data {d.name!r} does not fit this model: its images have shape {tuple(examples.shape)}, "
            f"the model was trained on images of shape {tuple(record['shape'])}"
        )
    return examples


def _as_colour(examples: Examples, shape: list[int]) -> Examples:
    """Grey images for a model of colour ones as three equal channels, which is what they are in colour."""
    if examples.shape[-1] == 1 and shape[-1] == 3 and tuple(examples.shape[:-1]) == tuple(shape[:-1]):
        return replace(examples, values=np.repeat(examples.values, 3, axis=-1))
    return examples
