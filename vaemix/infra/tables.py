"""Tables: ``[N, F]`` rows from a ``.csv``, a ``.npz`` (``x`` and labels ``y``) or a ``.npy`` (read from disk a
batch at a time, so N may exceed memory), or generated Gaussian blobs.

A CSV's categorical columns are one-hot encoded, its label column set apart, its dropped columns left out.
The VAE's preprocessing (imputation of missing values, standardisation) is fitted on the training rows
and recorded in the run dir (``data.json``), so evaluation, prediction and export apply exactly the same.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vaemix.errors import VaemixError
from vaemix.infra.arrays import NpyRows, array_labels, existing_file, held_out_split, named_labels, read_npz
from vaemix.infra.config import DataConfig
from vaemix.infra.examples import CHUNK, Dataset, Examples, Preprocessing
from vaemix.maths.mixture.checks import is_constant, unit_scale
from vaemix.maths.streams import Stream

log = logging.getLogger("vaemix")
STANDARD_CLIP = 5.0  # standardised values are clipped to +-5 deviations (see Preprocessing)
MISSING = ("", "na", "nan", "null", "none", "?")  # cells read as a missing value (any case)
SEPARATORS = ",;\t|"
SNIFF_LINES = 200  # lines that decide the separator
_NUMBERED_MIN = 5  # columns numbered 0 or 1 up across at least this many is a header even above whole numbers
TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")  # read as delimited text
DECIMAL_COMMA = re.compile(r"\s*[-+]?\d*,\d+(?:[eE][-+]?\d+)?\s*")  # "-0,25": a European spreadsheet's number


@dataclass(frozen=True)
class TableSpec:
    """How a file's columns become features: what training fitted, what a new file must match."""

    columns: list[str]  # the feature names, one-hot columns as "name=category"
    categories: dict[str, list[str]] = field(default_factory=dict)  # categorical column -> its categories
    label_column: str | None = None
    label_names: list[str] | None = None  # label values, when they are not integers

    @classmethod
    def from_record(cls, record: dict) -> TableSpec | None:
        """The spec a run's data record (``data.json``) holds, if it holds one."""
        if "columns" not in record:
            return None
        return cls(record["columns"], record["categories"], record["label_column"], record["label_names"])


@dataclass(frozen=True)
class Table:
    values: np.ndarray  # [N, F] float (NpyRows, read on demand, for a .npy); NaN where a value is missing
    labels: np.ndarray | None  # [N] int64
    spec: TableSpec


def blobs(
    n: int, dims: int, clusters: int, separation: float, seed: int, sample_seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points from ``clusters`` Gaussians in ``dims`` dims whose means are ``separation`` * N(0, I)
    apart and whose covariances are random with unit-order scale; returns ``x [n, dims]``, labels ``[n]``.
    ``seed`` picks the Gaussians; ``sample_seed``, when given, draws the points from its own stream, so a
    large set can be written a chunk at a time from the same Gaussians."""
    rng = np.random.default_rng([seed, Stream.BLOBS])
    means = rng.normal(size=(clusters, dims)) * separation
    a = rng.normal(size=(clusters, dims, dims)) / np.sqrt(dims)
    covs = a @ a.transpose(0, 2, 1) + 0.3 * np.eye(dims)
    weights = rng.dirichlet(np.full(clusters, 5.0))
    rng = rng if sample_seed is None else np.random.default_rng([seed, Stream.BLOBS, sample_seed])
    labels = rng.choice(clusters, size=n, p=weights)
    noise, chol = rng.normal(size=(n, dims)), np.linalg.cholesky(covs)
    x = np.empty((n, dims))
    for k in range(clusters):  # a cluster at a time: never an [N, D, D] array
        rows = labels == k
        x[rows] = means[k] + noise[rows] @ chol[k].T
    return x, labels


def _number(cell: str) -> float | None:
    if cell.strip().lower() in MISSING:
        return np.nan
    try:
        return float(cell)
    except ValueError:
        return None


def _column(ref: str, names: list[str], key: str, path: Path) -> int:
    """A column named by its header name or its index from 0."""
    if ref in names:
        return names.index(ref)
    if str(ref).isdigit() and int(ref) < len(names):
        return int(ref)
    raise VaemixError(f"{key}={ref!r} is not a column of {path} (its columns: {', '.join(names)})")


def _parse(path: Path, text: str, delimiter: str) -> list[list[str]]:
    try:
        return [row for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if row]
    except csv.Error as e:
        raise VaemixError(f"{path}: not a readable CSV ({e})") from None


def _split(path: Path, text: str, delimiter: str) -> list[list[str]]:
    """The rows of ``text`` split at ``delimiter``; with any delimiter but a comma, a decimal comma is read
    as a point (a spreadsheet saved where the comma is the decimal mark separates cells by ``;``)."""
    rows = _parse(path, text, delimiter)
    if delimiter == "," or "," not in text:
        return rows
    return [[c.replace(",", ".") if DECIMAL_COMMA.fullmatch(c) else c for c in row] for row in rows]


def _separator(path: Path, text: str) -> str:
    """Of the separators that split the first lines into equally many cells (two or more), the one that
    leaves the most cells numbers; a comma on a tie, or when none does."""
    sample = "\n".join(text.splitlines()[:SNIFF_LINES])
    best, most = ",", -1.0
    for delimiter in SEPARATORS:
        try:
            rows = _split(path, sample, delimiter)
        except VaemixError:  # a quoted cell cut by the sample's end
            continue
        if rows and len(rows[0]) > 1 and all(len(row) == len(rows[0]) for row in rows):
            cells = [c for row in rows for c in row]
            share = sum(_number(c) is not None for c in cells) / len(cells)
            best, most = (delimiter, share) if share > most else (best, most)
    return best


def _cells(path: Path) -> list[list[str]]:
    """The non-empty rows of a UTF-8 CSV (a byte-order mark dropped) as cells, split at the separator
    :func:`_separator` finds."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix.lower() == ".gz" else path.read_bytes()
        text = data.decode("utf-8-sig")
    except (gzip.BadGzipFile, EOFError) as e:
        raise VaemixError(f"{path}: not a readable gzip file ({e})") from None
    except UnicodeDecodeError as e:
        byte = f"byte {e.object[e.start]:#04x} at offset {e.start}"
        raise VaemixError(f"{path}: not UTF-8 text ({byte}); save it as UTF-8") from None
    delimiter = _separator(path, text)
    if delimiter != ",":
        decimal = ", and its decimal commas read as points" if "," in text else ""
        log.info("%s: its cells are separated by %r, not commas%s", path, delimiter, decimal)
    return _split(path, text, delimiter)


def _has_header(rows: list[list[str]], names: set[str]) -> bool:
    """Whether the first row names the columns: it holds fewer numbers than the second, or no number and
    either one of ``names`` (columns the config or a trained model names) or no cell that recurs in its
    column (a category's value would)."""
    if len(rows) < 2:
        return False
    numeric = [sum(_number(c) is not None for c in row) for row in rows[:2]]
    if numeric[0] < numeric[1] or _numbered_columns(rows):
        return True
    first = [c.strip() for c in rows[0]]
    if any(_number(c) is not None and c for c in first):
        return False
    return bool((names - {""}) & set(first)) or not any(
        cell in {c.strip() for c in column} for cell, column in zip(first, zip(*rows[1:], strict=False), strict=False)
    )


def _column_run(row: list[str]) -> int | None:
    """The first number of a row that counts up by one (``0,1,2,...``, after an empty cell above an index
    column), or None."""
    cells = [c.strip() for c in row]
    cells = cells[1:] if cells[0] == "" else cells
    if len(cells) < 2 or not all(c.lstrip("-").isdigit() for c in cells):
        return None
    start = int(cells[0])
    return start if all(int(c) == start + i for i, c in enumerate(cells)) else None


def _numbered_columns(rows: list[list[str]]) -> bool:
    """Whether the first row numbers the columns (``0,1,2,...`` as pandas writes a DataFrame's unnamed
    columns; or years) above rows of numbers with a decimal point: a run of whole numbers written otherwise
    than the rows below it is no data row. Above whole numbers, only a run from 0 or 1 across at least
    ``_NUMBERED_MIN`` columns is taken for one (no data row is likely to be that)."""
    start = _column_run(rows[0])
    if start is None:
        return False
    if start in (0, 1) and len(rows[0]) >= _NUMBERED_MIN:
        return True
    return any("." in c and _number(c) is not None for row in rows[1:50] for c in row)


def _csv_rows(path: Path, names: set[str], header: bool | None) -> tuple[list[str], list[list[str]]]:
    """The header (or column numbers, if the first row is data) and the rows of a CSV, all equally long;
    ``header`` says whether there is one (None: detect it)."""
    rows = _cells(path)
    if not rows:
        raise VaemixError(f"{path}: the file has no rows")
    has_header = _has_header(rows, names) if header is None else header
    if header is None and _column_run(rows[0]) is not None:
        if has_header:
            log.info("%s: its first row counts the columns up and names them (data.header=false: a data row)", path)
        else:
            log.warning(
                "%s: its first row counts the columns up but is read as data (data.header=true: a header)", path
            )
    names = [c.strip() for c in rows[0]] if has_header else [str(i) for i in range(len(rows[0]))]
    rows = rows[1:] if has_header else rows
    for i, row in enumerate(rows):
        if len(row) != len(names):
            raise VaemixError(
                f"{path}: data row {i} has {len(row)} cells, the {'header' if has_header else 'first row'} {len(names)}"
            )
    if not rows:
        raise VaemixError(f"{path}: the file has a header but no data rows")
    return names, rows


def _encoded(path: Path, name: str, cells: list[str], categories: list[str] | None) -> tuple[np.ndarray, list[str]]:
    """A column as numbers ``[N, 1]``, or one-hot ``[N, C]`` when ``categories`` is given."""
    if categories is not None:
        out = np.zeros((len(cells), len(categories)))
        number = {c: k for k, c in enumerate(categories)}
        for i, cell in enumerate(cells):
            if (k := number.get(cell.strip())) is not None:
                out[i, k] = 1.0  # a category training never saw: all zeros
        return out, [f"{name}={c}" for c in categories]
    values = [_number(c) for c in cells]
    bad = next((i for i, v in enumerate(values) if v is None), None)
    if bad is not None:
        raise VaemixError(
            f"{path}: column {name!r} has the non-numeric value {cells[bad]!r} in data row {bad}; "
            f"declare it in data.categorical_columns=[{name}], leave it out with data.drop_columns=[{name}], "
            "or fix the file"
        )
    return np.asarray(values, np.float64)[:, None], [name]


def _trained_columns(spec: TableSpec) -> list[str]:
    """The columns of the file a model was trained on that its features came from."""
    one_hot = {f"{name}={c}" for name, values in spec.categories.items() for c in values}
    return [c for c in spec.columns if c not in one_hot] + list(spec.categories)


def _unwanted(names: list[str], columns: list[tuple[str, ...]]) -> dict[int, str]:
    """Columns no one means as features, and why: those empty in every row (a trailing comma's), and an
    unnamed first column of increasing whole numbers (the row index pandas writes unless ``index=False``)."""
    out = {j: "holds nothing in any row" for j, column in enumerate(columns) if not any(c.strip() for c in column)}
    first = [c.strip() for c in columns[0]]
    if names[0] == "" and all(c.isdigit() for c in first) and np.all(np.diff([int(c) for c in first]) > 0):
        out[0] = "numbers its rows (the index pandas writes unless index=False)"
    return out


def _layout(
    path: Path, names: list[str], unwanted: dict[int, str], d: DataConfig, spec: TableSpec | None
) -> tuple[int | None, set, set]:
    """The label column and the dropped and categorical columns of a CSV whose header is ``names``: the
    config's, and with a trained model's ``spec`` its label and categorical columns too. The ``unwanted``
    columns (see :func:`_unwanted`) are dropped, unless the model takes them. A file that names the model's
    columns must name exactly those (in any order) once its label and dropped columns are set apart."""
    label_ref = d.label_column
    if label_ref is None and spec and spec.label_column in names:
        label_ref = spec.label_column
    label = None if label_ref is None else _column(label_ref, names, "data.label_column", path)
    drop = {_column(c, names, "data.drop_columns", path) for c in d.drop_columns}
    categorical = {_column(c, names, "data.categorical_columns", path) for c in d.categorical_columns}
    taken = set(_trained_columns(spec)) if spec else set()
    for j, why in unwanted.items():
        if j != label and j not in drop and names[j] not in taken:
            log.warning("%s: column %d (%r) %s and is left out", path, j, names[j], why)
            drop.add(j)
    if taken & set(names):
        categorical |= {names.index(c) for c in spec.categories if c in names}
        kept = [n for j, n in enumerate(names) if j != label and j not in drop]
        missing, extra = [c for c in _trained_columns(spec) if c not in kept], [c for c in kept if c not in taken]
        why = [f"it lacks the column(s) {_quoted(missing)} it was trained on"] if missing else []
        if extra:
            why.append(f"it has the column(s) {_quoted(extra)} it was not (data.drop_columns=[...] leaves them out)")
        if why:
            raise VaemixError(f"{path} does not fit this model: {'; '.join(why)}")
    return label, drop, categorical


def _quoted(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def read_csv(path: Path, d: DataConfig, spec: TableSpec | None = None) -> Table:
    """A CSV's features, labels and spec; with ``spec`` (a trained model's), its columns, categories and
    labels, in its order."""
    named = {str(c) for c in (d.label_column, *d.categorical_columns, *d.drop_columns) if c is not None}
    if spec:
        named |= {spec.label_column or "", *_trained_columns(spec)}
    names, rows = _csv_rows(path, named, d.header)
    columns = list(zip(*rows, strict=True))
    label, drop, categorical = _layout(path, names, _unwanted(names, columns), d, spec)
    known = spec.categories if spec else {}
    parts, features, categories = [], [], {}
    for j, name in enumerate(names):
        if j == label or j in drop:
            continue
        cats = known.get(name, sorted({c.strip() for c in columns[j]})) if j in categorical else None
        values, cols = _encoded(path, name, list(columns[j]), cats)
        parts.append(values), features.extend(cols)
        if cats is not None:
            categories[name] = cats
    if not features:
        raise VaemixError(f"{path}: no feature columns are left (label and dropped columns set apart)")
    x = np.concatenate(parts, axis=1)
    if spec and features != spec.columns and sorted(features) == sorted(spec.columns):
        x, features = x[:, [features.index(c) for c in spec.columns]], list(spec.columns)
    known_labels = spec and spec.label_names
    labels, label_names = (None, None) if label is None else named_labels(list(columns[label]), known_labels)
    return Table(x, labels, TableSpec(features, categories, None if label is None else names[label], label_names))


def read_table(d: DataConfig, spec: TableSpec | None = None) -> Table:
    """The table at ``d.path``: a .csv, .tsv or .txt, gzipped or not (see :func:`read_csv`), a .npz (``x``
    [N, F] and labels ``y``) or a .npy (read on demand)."""
    p = existing_file(d.path or "")
    if p.suffix != ".npz" and (d.x_key, d.y_key) != ("x", "y"):
        key, value = ("data.x_key", d.x_key) if d.x_key != "x" else ("data.y_key", d.y_key)
        labels = "data.label_column=<its column>" if p.name.lower().endswith(TEXT_SUFFIXES) else "a .npz's y"
        raise VaemixError(f"{key}={value!r} names an array of a .npz; {p.name} has none (labels: {labels})")
    if p.name.lower().endswith(TEXT_SUFFIXES):
        return read_csv(p, d, spec)
    if d.label_column is not None or d.categorical_columns or d.header is not None:
        raise VaemixError(
            f"data.label_column, data.categorical_columns and data.header are for a .csv; {p.name} holds numbers "
            "(put labels in a .npz's y)"
        )
    if p.suffix == ".npy":
        values, labels = NpyRows(p), None
    elif p.suffix == ".npz":
        values = read_npz(p, d.x_key, sole=True, setting="data.x_key")
        labels = read_npz(p, d.y_key, optional=d.y_key == "y", setting="data.y_key")
    else:
        raise VaemixError(f"data.path={d.path!r}: a table must be a .csv (.tsv, .txt, gzipped too), .npz or .npy file")
    numeric = np.issubdtype(values.dtype, np.number) or values.dtype == bool
    if values.ndim != 2 or not numeric or len(values) == 0 or values.shape[1] == 0:
        raise VaemixError(f"{p}: a table must be a non-empty numeric [N, F] array, got {values.dtype} {values.shape}")
    if labels is not None and labels.size != len(values):
        raise VaemixError(f"{p}: {labels.size} labels for {len(values)} rows")
    labels, names = (None, None) if labels is None else array_labels(p, labels, spec and spec.label_names)
    return Table(values, labels, TableSpec([str(i) for i in range(values.shape[1])], label_names=names))


def load_table(
    d: DataConfig, seed: int, spec: TableSpec | None = None
) -> tuple[np.ndarray, np.ndarray | None, TableSpec | None]:
    """The rows the toolkit fits, in memory, their labels and the table's spec: ``data=blobs`` (generated,
    no spec) or ``data=table`` (``data.path``, read as ``spec`` says when a fit's record holds one)."""
    if d.name == "blobs":
        return *blobs(d.n, d.dims, d.clusters, d.separation, seed), None
    table = read_table(d, spec)
    check_values(table, d, complete=True)
    return np.asarray(table.values, np.float64), table.labels, table.spec


def _bad_rows(values: np.ndarray, test, what: str, path: str) -> None:
    """An error naming the first rows (and columns) where ``test(values)`` holds, if any does."""
    rows, cols = [], []
    for start in range(0, len(values), CHUNK):
        r, c = np.nonzero(test(np.asarray(values[start : start + CHUNK], np.float64)))
        rows += (r + start).tolist()
        cols += c.tolist()
        if len(rows) >= 5:
            break
    if rows:
        where = ", ".join(f"row {r} column {c}" for r, c in list(zip(rows, cols, strict=True))[:5])
        raise VaemixError(f"{path}: {what} at {where}")


def _column_statistics(examples: Examples, median: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per feature over the split: mean, standard deviation and the mean (or median) for missing values."""
    if median:  # needs every row at once
        x = examples.raw()
        return np.nanmean(x, 0), np.nanstd(x, 0), np.nanmedian(x, 0)
    count = total = squares = 0.0
    for start in range(0, len(examples), CHUNK):
        x = np.asarray(examples.raw(start, start + CHUNK), np.float64)
        count = count + np.sum(~np.isnan(x), 0)
        total, squares = total + np.nansum(x, 0), squares + np.nansum(x**2, 0)
    mean = total / np.maximum(count, 1)
    return mean, np.sqrt(np.maximum(squares / np.maximum(count, 1) - mean**2, 0.0)), mean


def fit_preprocessing(train: Examples, d: DataConfig, columns: list[str]) -> Preprocessing:
    """Imputation and standardisation fitted on the training rows ``train`` (their preprocessing unset)."""
    mean, std, fill = _column_statistics(train, d.impute == "median")
    if np.any(np.isnan(mean)):
        j = int(np.argmax(np.isnan(mean)))
        raise VaemixError(f"{d.path}: column {columns[j]!r} has no value in any training row")
    if d.preprocessing == "none":
        return Preprocessing("table", np.zeros_like(mean), np.ones_like(std), None if d.impute == "none" else fill)
    constant = np.flatnonzero(is_constant(mean, std))
    if len(constant):  # they carry nothing; a scale of 1 maps them to 0 instead of dividing by zero
        names = ", ".join(repr(columns[j]) for j in constant[:8]) + (" ..." if len(constant) > 8 else "")
        log.warning("%s: %d column(s) are constant in the training rows and are kept as 0: %s", d.path,
                    len(constant), names)  # fmt: skip
        std = unit_scale(mean, std)
    return Preprocessing("table", mean, std, None if d.impute == "none" else fill, STANDARD_CLIP)


def check_values(table: Table, d: DataConfig, complete: bool = False) -> None:
    """Infinities are an error; missing values are too unless ``data.impute`` fills them, and always with
    ``complete`` (the toolkit, which does not impute)."""
    _bad_rows(table.values, np.isinf, "values are infinite", d.path or "")
    if complete or d.impute == "none":
        fix = "the toolkit fits complete rows: fill or drop them" if complete else "set data.impute=mean or median"
        _bad_rows(table.values, np.isnan, f"values are missing ({fix}, or fix the file)", d.path or "")


def table_dataset(
    d: DataConfig, spec: TableSpec | None = None, preprocessing: Preprocessing | None = None
) -> tuple[Dataset, TableSpec]:
    """The table ``d`` names as the VAE's training and held-out rows. With ``spec`` and ``preprocessing``
    (a trained run's, from its ``data.json``) the file is read and scaled as training did; else both are
    fitted on the training rows."""
    table = read_table(d, spec)
    check_values(table, d)
    train, test = held_out_split(len(table.values), d.test_fraction)
    raw = Preprocessing("table")
    pre = preprocessing or fit_preprocessing(Examples(table.values, raw, train), d, table.spec.columns)
    labels = table.labels
    return Dataset(
        "table",
        Examples(table.values, pre, train, None if labels is None else labels[train]),
        Examples(table.values, pre, test, None if labels is None else labels[test]),
        table.spec.columns,
    ), table.spec
