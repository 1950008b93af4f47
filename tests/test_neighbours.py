"""Neighbour views for tables: each training row's nearest rows, exact or within the batch, and the second
view the pipeline builds from one of them."""

import numpy as np
import tensorflow as tf

from vaemix.infra import neighbours as nb
from vaemix.infra.config import DataConfig
from vaemix.infra.examples import Examples, Preprocessing
from vaemix.infra.pipeline import train_dataset
from vaemix.infra.tables import table_dataset

PLAIN = Preprocessing("table", np.zeros(1), np.ones(1))
POINTS = [0.0, 1.0, 3.0, 10.0, 12.0, 30.0]
NEAREST_TWO = [[1, 2], [0, 2], [1, 0], [4, 2], [3, 2], [4, 3]]  # of each point of POINTS, nearest first
UNCHANGED = dict(corrupt_fraction=0.0, corrupt_noise=0.0)


def _line(points, index=None) -> Examples:
    return Examples(np.asarray(points, np.float32)[:, None], PLAIN, index)  # [N, 1]


def test_exact_neighbours_are_the_nearest_other_rows_of_the_split():
    found = nb.find_neighbours(_line(POINTS), 2)
    assert found.k == 2
    np.testing.assert_array_equal(found.table, NEAREST_TWO)
    split = nb.find_neighbours(_line(POINTS, index=np.array([3, 0, 4])), 5)  # rows 10, 0, 12
    assert split.k == 2  # at most the split's other rows
    np.testing.assert_array_equal(split.table, [[2, 1], [0, 2], [0, 1]])  # positions in the split
    assert nb.find_neighbours(_line(POINTS), 0) is None
    assert nb.find_neighbours(_line([4.0]), 5) is None  # one row has no neighbour


def test_a_table_read_from_disk_or_too_large_to_search_finds_neighbours_in_the_batch(tmp_path, monkeypatch):
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", x=x)
    mapped, _ = table_dataset(DataConfig(name="table", path=str(tmp_path / "x.npy")))
    assert nb.find_neighbours(mapped.train, 5) == nb.Neighbours(5)
    loaded, _ = table_dataset(DataConfig(name="table", path=str(tmp_path / "x.npz")))
    assert nb.find_neighbours(loaded.train, 5).table.shape == (len(loaded.train), 5)
    monkeypatch.setattr(nb, "EXACT_ROWS", 10)
    assert nb.find_neighbours(loaded.train, 5) == nb.Neighbours(5)


def test_partners_are_drawn_from_the_k_nearest_and_seeded():
    table = nb.Neighbours(2, np.array(NEAREST_TWO, np.int32))
    idx = tf.constant([3] * 200)
    drawn = nb.partner_positions(table, idx, tf.constant([1, 2], tf.int64)).numpy()
    assert set(drawn) == {2, 4}  # both of point 10's nearest, nothing else
    np.testing.assert_array_equal(drawn, nb.partner_positions(table, idx, tf.constant([1, 2], tf.int64)))
    x = tf.constant(POINTS[:4])[:, None]  # [4, 1]: 0, 1, 3, 10
    nearest = nb.partner_in_batch(x, 1, tf.constant([0, 0], tf.int64)).numpy()
    np.testing.assert_array_equal(nearest[:, 0], [1.0, 0.0, 1.0, 3.0])
    seen = {nb.partner_in_batch(x, 2, tf.constant([s, 0], tf.int64)).numpy()[0, 0] for s in range(40)}
    assert seen == {1.0, 3.0}  # 0's two nearest in the batch


def test_the_second_view_starts_from_a_neighbour_and_the_target_stays_the_row():
    examples = _line(POINTS)
    batches, counters = np.array([[0, 3, 5], [5, 1, 2]], np.int32), np.array([0, 1])
    found = nb.find_neighbours(examples, 1)

    def views(neighbours):
        ds = train_dataset(examples, batches, counters, "none", 0, UNCHANGED, 2, neighbours=neighbours)
        return [([v.numpy()[:, 0] for v in pair], t.numpy()[:, 0]) for pair, t in ds]

    for (first, second), target in views(found):
        np.testing.assert_array_equal(first, target)
        nearest = [POINTS[found.table[POINTS.index(p), 0]] for p in target]
        np.testing.assert_array_equal(second, nearest)
    (first, second), target = views(None)[0]
    np.testing.assert_array_equal(second, target)  # without neighbours both views start from the row
    (first, second), target = views(nb.Neighbours(1))[0]
    np.testing.assert_array_equal(second, [10.0, 0.0, 10.0])  # nearest within the batch 0, 10, 30
