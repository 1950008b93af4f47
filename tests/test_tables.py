"""Vectors through the VAE: reading tables, their preprocessing, the memory-mapped path, corruption views,
the resolved model, and a table model through training, prediction and export."""

import gzip
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
from test_export import _load_in_fresh_process

from conftest import compose_config
from vaemix.apps.export import export_run
from vaemix.apps.prediction import predict_run
from vaemix.apps.resolve import resolve, table_batch, table_latent_dim, table_widths
from vaemix.apps.restore import restore_run
from vaemix.apps.training import train
from vaemix.errors import VaemixError
from vaemix.infra.arrays import NpyRows
from vaemix.infra.augment import corrupt_rows
from vaemix.infra.config import DataConfig, PredictOptions
from vaemix.infra.datasets import load_dataset
from vaemix.infra.examples import Preprocessing
from vaemix.infra.pipeline import train_dataset
from vaemix.infra.rundir import read_data_record
from vaemix.infra.tables import read_table, table_dataset


def _csv(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _blobs_csv(path, n: int = 300, seed: int = 0) -> str:
    """Three well separated clusters in 5 features, a categorical column that follows them (an independent
    one would be a second cluster structure), and a named label column."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    x = np.eye(3, 5)[labels] * 6 + rng.normal(size=(n, 5))
    lines = ["a,b,c,d,e,site,kind"] + [
        ",".join(f"{v:.4f}" for v in row) + f",{'south' if lab == 2 else 'north'},k{lab}"
        for row, lab in zip(x, labels, strict=True)
    ]
    return _csv(path, "\n".join(lines) + "\n")


def test_a_csv_with_a_header_label_categorical_and_dropped_columns(tmp_path):
    path = _csv(tmp_path / "t.csv", "x,colour,y,noise,label\n1.5,red,2,9,cat\n-1,blue,,9,dog\n3,red,4e-1,9,cat\n")
    d = DataConfig(name="table", path=path, label_column="label", categorical_columns=["colour"], drop_columns=["3"])
    table = read_table(d)
    assert table.spec.columns == ["x", "colour=blue", "colour=red", "y"]
    np.testing.assert_array_equal(table.values[[0, 2]], [[1.5, 0, 1, 2], [3, 0, 1, 0.4]])
    assert np.isnan(table.values[1, 3]) and table.values[1, :3].tolist() == [-1, 1, 0]  # an empty cell is missing
    assert table.labels.tolist() == [0, 1, 0] and table.spec.label_names == ["cat", "dog"]
    headless = read_table(DataConfig(name="table", path=_csv(tmp_path / "h.csv", "1,2,0\n3,4,1\n"), label_column="2"))
    assert headless.spec.columns == ["0", "1"] and headless.labels.tolist() == [0, 1]


def test_a_csv_is_read_whatever_its_separator_decimal_mark_byte_order_mark_or_all_text_header(tmp_path, caplog):
    rows = "1.5;2\n-1;0.5\n"
    files = [("semi", "a;b\n" + rows, "utf-8"), ("tab", "a\tb\n" + rows.replace(";", "\t"), "utf-8"),
             ("bom", "a,b\n" + rows.replace(";", ","), "utf-8-sig")]  # fmt: skip
    for name, text, encoding in files:
        (tmp_path / f"{name}.csv").write_text(text, encoding=encoding)
        table = read_table(DataConfig(name="table", path=str(tmp_path / f"{name}.csv"), drop_columns=["a"]))
        assert table.spec.columns == ["b"] and table.values[:, 0].tolist() == [2, 0.5], name
    euro = _csv(tmp_path / "euro.csv", "a;b;colour\n0,5;-1,25e2;red\n2;3,0;blue\n")  # decimal commas
    table = read_table(DataConfig(name="table", path=euro, categorical_columns=["colour"]))
    assert table.spec.columns == ["a", "b", "colour=blue", "colour=red"]
    np.testing.assert_array_equal(table.values, [[0.5, -125, 0, 1], [2, 3, 1, 0]])
    fractions = read_table(DataConfig(name="table", path=_csv(tmp_path / "f.csv", "0,5;0,25\n1,5;2,75\n")))
    np.testing.assert_array_equal(fractions.values, [[0.5, 0.25], [1.5, 2.75]])  # a comma splits these too
    quoted = _csv(tmp_path / "q.csv", 'a,note\n1.5,"x; y"\n2,"z; w"\n')  # a ';' inside quotes: still commas
    assert read_table(DataConfig(name="table", path=quoted, drop_columns=["note"])).values[:, 0].tolist() == [1.5, 2]
    words = "colour,size\nred,big\nblue,big\nred,small\n"
    for categorical in (["colour", "size"], ["0", "1"]):  # a header of names only, found by name or not
        d = DataConfig(name="table", path=_csv(tmp_path / "w.csv", words), categorical_columns=categorical)
        table = read_table(d)
        assert table.spec.columns == ["colour=blue", "colour=red", "size=big", "size=small"], categorical
        np.testing.assert_array_equal(table.values, [[0, 1, 1, 0], [1, 0, 1, 0], [0, 1, 0, 1]])
    headless = read_table(DataConfig(name="table", path=_csv(tmp_path / "n.csv", "red,big\nblue,big\nred,small\n"),
                                     categorical_columns=["0", "1"]))  # fmt: skip
    assert len(headless.values) == 3  # its first row's values recur: they are data
    gap = _csv(tmp_path / "g.csv", "red,\nblue,big\nred,small\n")
    trained = read_table(DataConfig(name="table", path=gap, categorical_columns=["0", "1"])).spec
    assert len(read_table(DataConfig(name="table", path=gap), trained).values) == 3  # an empty cell names nothing
    with caplog.at_level(logging.WARNING, logger="vaemix"):  # trailing commas: an unnamed column of nothing
        trailing = read_table(DataConfig(name="table", path=_csv(tmp_path / "t.csv", "a,b,\n1,2,\n3,,\n")))
    assert trailing.spec.columns == ["a", "b"] and "column 2 ('') holds nothing in any row" in caplog.text
    with caplog.at_level(logging.WARNING, logger="vaemix"):  # pandas' to_csv without index=False
        indexed = read_table(DataConfig(name="table", path=_csv(tmp_path / "i.csv", ",a,b\n0,1,2\n1,3,4\n5,5,6\n")))
    assert indexed.spec.columns == ["a", "b"] and indexed.values.tolist() == [[1, 2], [3, 4], [5, 6]]
    assert "column 0 ('') numbers its rows (the index pandas writes unless index=False)" in caplog.text
    unordered = read_table(DataConfig(name="table", path=_csv(tmp_path / "u.csv", ",a\n3,1\n1,3\n")))
    assert unordered.spec.columns == ["", "a"]  # not increasing: a feature, even unnamed


def test_tsv_txt_and_gzipped_text_are_read_as_csv(tmp_path):
    text = "a\tb\n1.5\t2\n-1\t0.5\n"
    (tmp_path / "t.tsv").write_text(text)
    (tmp_path / "t.TXT").write_text(text.replace("\t", ","))
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(text.replace("\t", ";").encode()))
    for name in ("t.tsv", "t.TXT", "t.csv.gz"):
        table = read_table(DataConfig(name="table", path=str(tmp_path / name)))
        assert table.spec.columns == ["a", "b"] and table.values.tolist() == [[1.5, 2], [-1, 0.5]], name
    (tmp_path / "bad.csv.gz").write_bytes(text.encode())  # named .gz, not compressed
    with pytest.raises(VaemixError, match="bad.csv.gz: not a readable gzip file"):
        read_table(DataConfig(name="table", path=str(tmp_path / "bad.csv.gz")))


def test_npz_labels_and_npy_dtypes(tmp_path):
    x = np.arange(12.0).reshape(4, 3)
    np.savez(tmp_path / "named.npz", x=x, y=np.array(["dog", "cat", "dog", "emu"]))
    table = read_table(DataConfig(name="table", path=str(tmp_path / "named.npz")))
    assert table.labels.tolist() == [1, 0, 1, 2] and table.spec.label_names == ["cat", "dog", "emu"]
    np.savez(tmp_path / "whole.npz", x=x, y=np.array([2.0, 0.0, 1.0, 2.0]))
    assert read_table(DataConfig(name="table", path=str(tmp_path / "whole.npz"))).labels.tolist() == [2, 0, 1, 2]
    np.save(tmp_path / "flags.npy", x > 5)  # 0/1 features stored as booleans
    flags = read_table(DataConfig(name="table", path=str(tmp_path / "flags.npy")))
    assert np.asarray(flags.values, np.float64).tolist() == (x > 5).astype(float).tolist()
    np.savez(tmp_path / "positional.npz", x)  # one array, saved as arr_0
    assert read_table(DataConfig(name="table", path=str(tmp_path / "positional.npz"))).values.tolist() == x.tolist()
    np.savez(tmp_path / "fractions.npz", x=x, y=np.array([0.0, 0.5, 1.0, 1.0]))
    np.savez(tmp_path / "two.npz", x, x)  # two unnamed arrays: which are the features is not for us to guess
    np.save(tmp_path / "objects.npy", np.array([[1, "a"]] * 4, dtype=object), allow_pickle=True)
    for name, message in (("fractions.npz", r"labels y must be whole numbers or names, got float64 .* such as 0.0"),
                          ("two.npz", r"two.npz: no array 'x' in the .npz \(it has: arr_0, arr_1\)"),
                          ("objects.npy", r"objects.npy: the array holds Python objects, not numbers")):  # fmt: skip
        with pytest.raises(VaemixError, match=message):
            read_table(DataConfig(name="table", path=str(tmp_path / name)))


def test_a_header_of_column_numbers_is_a_header_above_fractions_or_across_five_columns(tmp_path, caplog):
    def read(name: str, text: str, header: bool | None = None):
        (tmp_path / name).write_text(text)
        return read_table(DataConfig(name="table", path=str(tmp_path / name), header=header))

    unnamed = read("unnamed.csv", "0,1,2\n0.5,-1.25,3\n2,0.75,1\n")  # pd.DataFrame(x).to_csv(path, index=False)
    assert unnamed.spec.columns == ["0", "1", "2"]
    assert np.asarray(unnamed.values).tolist() == [[0.5, -1.25, 3], [2, 0.75, 1]]
    indexed = read("indexed.csv", ",0,1\n0,0.5,1.5\n1,2.5,3.5\n")  # pd.DataFrame(x).to_csv(path)
    assert indexed.spec.columns == ["0", "1"] and np.asarray(indexed.values).tolist() == [[0.5, 1.5], [2.5, 3.5]]
    years = read("years.csv", "1990,1991,1992\n1.5,2.5,3\n")
    assert years.spec.columns == ["1990", "1991", "1992"] and len(years.values) == 1
    for name, text in (("counts.csv", "1,2,3\n4,5,6\n"), ("unordered.csv", "0,2,1\n0.5,1.5,2.5\n")):
        assert len(read(name, text).values) == 2  # whole numbers, or not a run: the first row is data
    assert (
        "counts.csv: its first row counts the columns up but is read as data (data.header=true: a header)"
        in caplog.text
    )
    assert "unordered.csv" not in caplog.text
    caplog.set_level(logging.INFO, logger="vaemix")
    wide = read("wide.csv", "0,1,2,3,4\n7,0,16,3,2\n5,5,0,1,9\n")  # pd.DataFrame(counts).to_csv(path, index=False)
    assert wide.spec.columns == ["0", "1", "2", "3", "4"] and np.asarray(wide.values).tolist()[0] == [7, 0, 16, 3, 2]
    assert "wide.csv: its first row counts the columns up and names them (data.header=false: a data row)" in caplog.text
    assert len(read("four.csv", "1,2,3,4\n4,5,6,7\n").values) == 2  # four columns: could be a row
    said = read("said.csv", "1,2,3\n4,5,6\n", header=True)
    assert said.spec.columns == ["1", "2", "3"] and np.asarray(said.values).tolist() == [[4, 5, 6]]
    assert np.asarray(read("data.csv", "0,1,2,3,4\n7,0,16,3,2\n", header=False).values).tolist()[0] == [0, 1, 2, 3, 4]
    np.save(tmp_path / "rows.npy", np.ones([3, 5]))
    for setting in ({"header": True}, {"label_column": "0"}):  # a .npy has no header and no label column
        with pytest.raises(VaemixError, match=r"and data.header are for a .csv; rows.npy holds numbers"):
            read_table(DataConfig(name="table", path=str(tmp_path / "rows.npy"), **setting))


def test_npz_arrays_by_scikit_learns_spelling_or_by_name(tmp_path):
    x = np.arange(12.0).reshape(4, 3)
    np.savez(tmp_path / "upper.npz", X=x, Y=np.array([1, 0, 1, 0]))  # scikit-learn's X and y
    upper = read_table(DataConfig(name="table", path=str(tmp_path / "upper.npz")))
    assert upper.values.tolist() == x.tolist() and upper.labels.tolist() == [1, 0, 1, 0]
    np.savez(tmp_path / "named.npz", embeddings=x, species=np.array([3, 2, 1, 0]), ids=np.arange(4))
    named = DataConfig(name="table", path=str(tmp_path / "named.npz"), x_key="embeddings", y_key="species")
    table = read_table(named)
    assert table.values.tolist() == x.tolist() and table.labels.tolist() == [3, 2, 1, 0]
    message = r"no array 'x' in the .npz \(it has: embeddings, species, ids\); name the one to read with data.x_key="
    with pytest.raises(VaemixError, match=message):
        read_table(DataConfig(name="table", path=str(tmp_path / "named.npz")))
    with pytest.raises(VaemixError, match=r"no array 'kind' .*; name the one to read with data.y_key="):
        read_table(DataConfig(name="table", path=str(tmp_path / "named.npz"), x_key="embeddings", y_key="kind"))
    np.savez(tmp_path / "both.npz", x=x, X=-x)  # both spellings: x is the one asked for
    assert read_table(DataConfig(name="table", path=str(tmp_path / "both.npz"))).values.tolist() == x.tolist()


@pytest.mark.parametrize(
    "text,overrides,message",
    [
        ("a,b\n1,x\n2,3\n", {}, r"column 'b' has the non-numeric value 'x' in data row 0; declare it"),
        ("a,b\n1,2\n3,\n", {}, r"values are missing \(set data.impute=mean or median.*\) at row 1 column 1"),
        ("a,b\n1,inf\n3,4\n", {}, r"values are infinite at row 0 column 1"),
        ("a,b\n1,2\n3,4\n", {"label_column": "species"}, r"data.label_column='species' is not a column of .*a, b"),
        ("a,b\n1,2\n3,4,5\n", {}, r"data row 1 has 3 cells, the header 2"),
    ],
)
def test_bad_tables_are_one_clear_error(tmp_path, text, overrides, message):
    with pytest.raises(VaemixError, match=message):
        table_dataset(DataConfig(name="table", path=_csv(tmp_path / "bad.csv", text), test_fraction=0.5, **overrides))


def test_preprocessing_is_fitted_on_the_training_rows_and_imputes(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)) * [1, 10, 100] + [0, 5, -50]
    x[3, 1] = np.nan
    np.savez(tmp_path / "x.npz", x=x)
    data, _ = table_dataset(DataConfig(name="table", path=str(tmp_path / "x.npz"), impute="mean"))
    train = np.concatenate(list(data.train.batches(7)))
    np.testing.assert_allclose(train.mean(0), 0, atol=1e-5)  # standardised by the training rows' own statistics
    np.testing.assert_allclose(train.std(0), 1, atol=1e-5)
    assert np.all(np.isfinite(np.concatenate(list(data.test.batches(100)))))
    fill = data.train.preprocessing.fill
    rows = data.train.index
    np.testing.assert_allclose(fill[1], np.nanmean(x[rows, 1]))  # the mean of the training rows only


def test_a_constant_column_is_kept_as_zero_with_a_warning(tmp_path, caplog):
    x = np.c_[np.random.default_rng(0).normal(size=(30, 2)), np.full(30, 7.0)]
    np.savez(tmp_path / "c.npz", x=x)
    with caplog.at_level(logging.WARNING, logger="vaemix"):
        data, _ = table_dataset(DataConfig(name="table", path=str(tmp_path / "c.npz")))
    assert "1 column(s) are constant in the training rows and are kept as 0: '2'" in caplog.text
    rows = np.concatenate(list(data.train.batches(100)))
    assert np.all(np.isfinite(rows)) and np.all(rows[:, 2] == 0)


def test_standardised_values_are_clipped_at_five_deviations_and_recorded(tmp_path):
    """A rare value of a nearly constant feature (a border pixel of MNIST stands up to 70 deviations out)
    is clipped to 5, in every split, and the clip travels with the run's record."""
    x = np.c_[np.random.default_rng(0).normal(size=(400, 2)), np.zeros(400)]
    x[::100, 2] = 1.0  # one row in a hundred: (1 - 0.01) / 0.0995 = 9.95 deviations
    np.savez(tmp_path / "r.npz", x=x)
    data, _ = table_dataset(DataConfig(name="table", path=str(tmp_path / "r.npz")))
    rows = np.concatenate([*data.train.batches(100), *data.test.batches(100)])
    assert rows[:, 2].max() == 5.0 and np.all(np.abs(rows) <= 5.0)
    assert np.sum(rows[:, 2] == 5.0) == 4  # rows 0, 100, 200, 300, wherever the split put them
    record = data.train.preprocessing.record()
    assert record["clip"] == 5.0 and Preprocessing.from_record(record).clip == 5.0
    assert Preprocessing.from_record(record | {"clip": None}).apply(x)[0, 2] > 9  # a run from before clipping
    old = {k: v for k, v in record.items() if k != "clip"}
    assert Preprocessing.from_record(old).clip is None


def test_an_npy_read_from_disk_feeds_the_same_batches_as_memory(tmp_path):
    x = np.random.default_rng(1).normal(size=(500, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", x=x)
    mapped, _ = table_dataset(DataConfig(name="table", path=str(tmp_path / "x.npy")))
    loaded, _ = table_dataset(DataConfig(name="table", path=str(tmp_path / "x.npz")))
    assert isinstance(mapped.train.values, NpyRows) and isinstance(loaded.train.values, np.ndarray)
    np.testing.assert_array_equal(mapped.train.values[[3, 4, 5, 9, 499]], x[[3, 4, 5, 9, 499]])
    np.testing.assert_array_equal(mapped.train.values[10:20], x[10:20])
    rows, counters = np.array([[5, 1, 399, 0], [7, 7, 2, 3]], np.int32), np.array([0, 1])
    a = [t.numpy() for _, t in train_dataset(mapped.train, rows, counters, "none", 0)]
    b = [t.numpy() for _, t in train_dataset(loaded.train, rows, counters, "none", 0)]
    np.testing.assert_allclose(a, b, atol=1e-6)
    expected = mapped.train.preprocessing.apply(x[mapped.train.index[[5, 1, 399, 0]]])
    np.testing.assert_allclose(a[0], expected, atol=1e-6)


def test_npy_rows_read_runs_slices_and_nothing_and_reject_a_cut_off_file(tmp_path, monkeypatch):
    x = np.arange(60, dtype=np.float32).reshape(20, 3)
    np.save(tmp_path / "x.npy", x)
    rows = NpyRows(tmp_path / "x.npy")
    for key in ([19, 0, 1, 2, 7, 8, 3], [5], slice(4, 9), slice(9, 4), slice(1, 12, 3), []):
        np.testing.assert_array_equal(rows[key], x[key])
    np.testing.assert_array_equal(np.asarray(rows), x)
    real_preadv = os.preadv  # a read that returns fewer bytes than asked (as one of over 2 GiB does) reads on
    monkeypatch.setattr(os, "preadv", lambda fd, bufs, at: real_preadv(fd, [bufs[0][:7]], at))
    np.testing.assert_array_equal(rows[[3, 4, 5, 0]], x[[3, 4, 5, 0]])
    monkeypatch.undo()
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-5])
    with pytest.raises(VaemixError, match="shorter than the 20 rows its header declares"):
        NpyRows(tmp_path / "cut.npy")


def test_corruption_swaps_values_within_their_own_column():
    x = tf.constant(np.arange(40, dtype=np.float32).reshape(8, 5))  # column j holds j, j+5, j+10, ...
    seed = tf.constant([4, 2], tf.int64)
    np.testing.assert_array_equal(corrupt_rows(x, seed, 0.0, 0.0).numpy(), x.numpy())
    swapped = corrupt_rows(x, seed, 1.0, 0.0).numpy()
    assert np.all(swapped % 5 == np.arange(5)) and not np.array_equal(swapped, x.numpy())
    half = corrupt_rows(x, seed, 0.5, 0.0).numpy()
    assert 0.2 < np.mean(half != x.numpy()) < 0.7
    np.testing.assert_array_equal(half, corrupt_rows(x, seed, 0.5, 0.0).numpy())  # seeded
    noisy = corrupt_rows(x, seed, 0.0, 0.1).numpy() - x.numpy()
    assert 0.05 < noisy.std() < 0.15


def test_the_model_is_resolved_from_the_data(tmp_path, tfds_dir):
    np.savez(tmp_path / "binary.npz", x=np.random.default_rng(0).integers(0, 2, size=(50, 20)))
    binary, _ = load_dataset(DataConfig(name="table", path=str(tmp_path / "binary.npz")))
    cfg = resolve(compose_config("data=table", f"data.path={tmp_path / 'binary.npz'}", "prior.components=3"), binary)
    assert cfg.model.likelihood == "bernoulli" and cfg.model.hidden == table_widths(20) == [64, 64, 128]
    assert cfg.model.latent_dim == 10 and cfg.trainer.batch_size == 16  # 40 training rows: the smallest batch
    explicit = compose_config("data=table", "data.path=b.npz", "prior.components=3", "trainer.batch_size=256")
    assert resolve(explicit, binary).trainer.batch_size == 40  # the whole training split, not 256
    images = compose_config(f"data.data_dir={tfds_dir}")
    resolved = resolve(images, load_dataset(images.data)[0])
    assert resolved.model.likelihood == "bernoulli" and resolved.model.hidden == [500, 500, 2000]
    assert resolved.model.latent_dim == 10 and resolved.trainer.batch_size == 256  # the VaDE recipe
    assert table_widths(784) == [500, 500, 2000] and table_widths(128) == [256, 256, 512]
    assert [table_latent_dim(f) for f in (4, 13, 64)] == [2, 6, 10] and table_batch(1437) == 143
    with pytest.raises(VaemixError, match="the training split has 40 rows for prior.components=50"):
        resolve(compose_config("data=table", "data.path=x.npz", "prior.components=50"), binary)


def test_fewer_rows_than_features_is_said_in_one_line(tmp_path, caplog):
    rng = np.random.default_rng(0)
    for name, rows in (("wide.npz", 50), ("long.npz", 60)):  # 40 and 48 training rows of 45 features
        np.savez(tmp_path / name, x=rng.normal(size=(rows, 45)))
    for name, warned in (("wide.npz", True), ("long.npz", False)):
        data, _ = load_dataset(DataConfig(name="table", path=str(tmp_path / name)))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="vaemix"):
            resolve(compose_config("data=table", f"data.path={tmp_path / name}", "prior.components=3"), data)
        line = "40 training rows of 45 features: with fewer rows than features the VAE's clusters have not been"
        assert (line in caplog.text) == warned and ("task=gmm task.covariance=diag" in caplog.text) == warned


TINY_TABLE = [
    "model.hidden=[16]",
    "model.latent_dim=2",
    "prior.components=3",
    "trainer.pretrain_epochs=30",
    "trainer.epochs=5",
    "trainer.progress=false",
    "prior.init_restarts=3",
    "trainer.batch_size=64",
]


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("table")
    path = _blobs_csv(d / "blobs.csv")
    overrides = ["data=table", f"data.path={path}", "data.label_column=kind", "data.categorical_columns=[site]"]
    metrics = train(compose_config(*overrides, *TINY_TABLE), d / "run")
    return d / "run", path, metrics


def test_a_table_trains_with_the_default_recipe_and_finds_its_clusters(table_run):
    run_dir, _, metrics = table_run
    assert metrics["cluster_acc"] >= 0.9 and metrics["components_used"] == 3  # chance: about 0.4
    cfg = restore_run(run_dir, (7,))[0]
    assert cfg.model.likelihood == "gaussian_per_feature" and cfg.data.augment  # the recipe's corruption views


def test_prediction_reads_a_new_file_as_training_did(table_run, tmp_path):
    run_dir, path, _ = table_run
    data = DataConfig(name="table", path=path, label_column="kind", categorical_columns=["site"])
    result = predict_run(run_dir, data=data, options=PredictOptions(iwae_samples=3))
    assert result["num_examples"] == 300 and result["cluster_acc"] >= 0.9
    # The same rows with the columns in another order, the label and categorical columns not named again:
    # the model's own, taken by name.
    lines = open(path).read().splitlines()
    order = [6, 5, 4, 0, 3, 1, 2]
    shuffled = _csv(tmp_path / "shuffled.csv", "\n".join(",".join(np.array(r.split(","))[order]) for r in lines))
    again = predict_run(run_dir, data=DataConfig(name="table", path=shuffled))
    clusters = [np.load(r["predictions"].replace(".csv", ".npz"))["cluster"] for r in (result, again)]
    assert again["cluster_acc"] == result["cluster_acc"] and clusters[0].tolist() == clusters[1].tolist()
    extra = _csv(tmp_path / "extra.csv", "\n".join(f"{r},{'id' if i == 0 else i}" for i, r in enumerate(lines)))
    with pytest.raises(VaemixError, match=r"extra.csv does not fit this model: it has the column\(s\) 'id' it was not"):
        predict_run(run_dir, data=DataConfig(name="table", path=extra))
    wrong = _csv(tmp_path / "short.csv", "a,b,c\n1,2,3\n4,5,6\n")
    lacks = r"short.csv does not fit this model: it lacks the column\(s\) 'd', 'e', 'site' it was trained on"
    with pytest.raises(VaemixError, match=lacks):
        predict_run(run_dir, data=DataConfig(name="table", path=wrong))
    headless = _csv(tmp_path / "headless.csv", "1,2,3\n4,5,6\n")  # no names: its columns are taken in order
    with pytest.raises(VaemixError, match=r"does not fit this model: it has 3 features, the model takes 7"):
        predict_run(run_dir, data=DataConfig(name="table", path=headless))


def test_a_table_export_takes_raw_rows(table_run, tmp_path):
    run_dir, _, _ = table_run
    path = export_run(run_dir)
    # the last row stands ~65 deviations out in a: the graph clips it as training did
    rows = np.array([[6, 0, 0, 0, 0, 1, 0], [0, 6, 0, 0, 0, 1, 0], [0, 0, 6, 0, 0, 0, 1], [200, 0, 0, 0, 0, 1, 0]])
    rows = rows.astype(np.float32)
    report, out = _load_in_fresh_process(path, {"cluster:features": rows, "reconstruct:features": rows}, tmp_path)
    assert not report["vaemix_imported"] and "cluster_float" not in report["signatures"]
    _, vae, _, _ = restore_run(run_dir, (7,))
    recorded = Preprocessing.from_record(read_data_record(run_dir)["preprocessing"])  # the graph applies it
    np.testing.assert_allclose(out["cluster:latent_mean"], vae.encoder(recorded.apply(rows)).mean().numpy(), atol=1e-5)
    assert recorded.clip == 5.0 and np.max(recorded.apply(rows)) == 5.0
    assert len(set(out["cluster:cluster"][:3].tolist())) == 3 and out["reconstruct:reconstruction"].shape == (4, 7)
