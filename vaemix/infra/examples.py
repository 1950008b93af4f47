"""Examples as stored and as the model sees them: uint8 images scaled to [0, 1], or table rows
standardised by statistics fitted on the training rows. Both kinds are read in batches, so a table may be a
``.npy`` larger than memory, read from disk: only the rows of a batch are ever copied."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

CHUNK = 65_536  # rows read at a time when a pass over a table computes statistics


@dataclass(frozen=True)
class Preprocessing:
    """``images``: ``x / 255``. ``table``: a missing value (NaN) replaced by its feature's ``fill``, then
    ``(x - mean) / scale`` per feature (mean 0 and scale 1 when not standardised), clipped to +-``clip``
    when set: a rare value of a nearly constant feature (a border pixel) stands up to 70 deviations
    out, and such rows made the ELBO phase diverge (benchmarks/README.md)."""

    kind: str  # images | table
    mean: np.ndarray | None = None  # [F]
    scale: np.ndarray | None = None  # [F]
    fill: np.ndarray | None = None  # [F]: imputed values (None: nothing is missing)
    clip: float | None = None

    def apply(self, values: np.ndarray) -> np.ndarray:
        if self.kind == "images":
            return values.astype(np.float32) / np.float32(255.0)
        x = np.asarray(values, np.float64)
        if self.fill is not None:
            x = np.where(np.isnan(x), self.fill, x)
        x = (x - self.mean) / self.scale
        return (x if self.clip is None else np.clip(x, -self.clip, self.clip)).astype(np.float32)

    def record(self) -> dict:
        if self.kind == "images":
            return {"kind": "images", "scale": "pixels / 255"}
        fill = None if self.fill is None else self.fill.tolist()
        stats = {"mean": self.mean.tolist(), "scale": self.scale.tolist()}
        return {"kind": "table", **stats, "fill": fill, "clip": self.clip}

    @classmethod
    def from_record(cls, record: dict) -> Preprocessing:
        if record["kind"] == "images":
            return cls("images")
        fill = None if record.get("fill") is None else np.asarray(record["fill"], np.float64)
        mean, scale = (np.asarray(record[k], np.float64) for k in ("mean", "scale"))
        return cls("table", mean, scale, fill, record.get("clip"))  # runs from before clipping have none


@dataclass(frozen=True)
class Examples:
    """One split: ``values[index]`` (all of ``values`` in order when ``index`` is None), its labels aligned
    with the split, and the preprocessing that makes model inputs of them."""

    values: np.ndarray  # [N, H, W, C] uint8 images, or [M, F] rows (NpyRows, read on demand, for a .npy)
    preprocessing: Preprocessing
    index: np.ndarray | None = None  # rows of ``values`` in this split
    labels: np.ndarray | None = None  # [len(self)]

    def __len__(self) -> int:
        return len(self.values) if self.index is None else len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one example (``[H, W, C]`` or ``[F]``)."""
        return tuple(self.values.shape[1:])

    def raw(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Examples ``[start, stop)`` of the split as stored (copied into memory)."""
        if self.index is None:
            return np.asarray(self.values[start:stop])
        return self.take(np.arange(len(self))[start:stop])

    def take(self, positions: np.ndarray) -> np.ndarray:
        """The examples at ``positions`` of the split, as stored (copied into memory)."""
        rows = positions if self.index is None else self.index[positions]
        order = np.argsort(rows, kind="stable")  # a file reads sorted rows fastest
        out = np.empty((len(rows), *self.shape), self.values.dtype)
        out[order] = self.values[rows[order]]
        return out

    def subset(self, positions: np.ndarray) -> Examples:
        """The examples at ``positions`` of the split, as a split of their own (nothing is copied)."""
        index = positions if self.index is None else self.index[positions]
        return replace(self, index=index, labels=None if self.labels is None else self.labels[positions])

    def batches(self, size: int) -> Iterator[np.ndarray]:
        """The split in order as float32 model inputs, ``size`` examples at a time (the last one shorter)."""
        for start in range(0, len(self), size):
            yield self.preprocessing.apply(self.raw(start, start + size))

    def first(self, n: int) -> Examples:
        """The first ``n`` examples of the split."""
        labels = None if self.labels is None else self.labels[:n]
        if self.index is None:
            return replace(self, values=self.values[:n], labels=labels)
        return replace(self, index=self.index[:n], labels=labels)

    def binary(self) -> bool:
        """Whether every value is one of two levels: 0 and 255 for images, 0 and 1 for a table."""
        top = 255 if self.preprocessing.kind == "images" else 1
        return all(bool(np.all((x == 0) | (x == top))) for x in self._chunks())

    def _chunks(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self), CHUNK):
            yield self.raw(start, start + CHUNK)


@dataclass(frozen=True)
class Dataset:
    """A named dataset: its training and held-out test examples."""

    name: str
    train: Examples
    test: Examples
    features: list[str] | None = None  # a table's feature names (a one-hot column as "name=category")

    @property
    def kind(self) -> str:
        return self.train.preprocessing.kind

    @property
    def shape(self) -> tuple[int, ...]:
        return self.train.shape
