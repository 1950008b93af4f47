"""Input checks shared by the toolkit's estimators: one clear error per kind of bad data."""

from __future__ import annotations

import numpy as np

from vaemix.errors import VaemixError


def check_data(x, components: int | None = None, name: str = "x") -> np.ndarray:
    """``[N, D]`` finite float64 data with at least ``components`` distinct rows, or a clear error."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise VaemixError(f"{name} must be a non-empty [N, D] array, got shape {x.shape}")
    bad = ~np.all(np.isfinite(x), axis=1)
    if bad.any():
        raise VaemixError(f"{name} has {int(bad.sum())} rows with NaN or inf (first: row {int(np.argmax(bad))})")
    if components is not None:
        distinct = distinct_rows(x)
        if distinct < components:
            raise VaemixError(
                f"{name} has {distinct} distinct points for {components} components; use fewer components"
            )
    return x


def distinct_rows(x: np.ndarray) -> int:
    """The number of distinct rows of ``x [N, D]``, from one random projection of each (distinct rows
    project apart with probability 1): a sort of N numbers instead of N rows."""
    direction = np.random.default_rng(0).normal(size=x.shape[1])
    return len(np.unique(x @ direction))


def check_options(components: int, covariance: str) -> None:
    """A mixture's component count and covariance structure, or a clear error."""
    if components < 1:
        raise VaemixError(f"components={components} is out of range; it must be >= 1")
    if covariance not in ("full", "diag"):
        raise VaemixError(f"covariance={covariance!r} is not allowed; choose one of: full, diag")


def is_constant(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``[D]`` booleans: columns whose standard deviation is rounding error beside their mean."""
    return std <= 1e-12 * np.maximum(np.abs(mean), 1.0)


def unit_scale(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``std [D]`` with constant columns' set to 1: standardising then only shifts them, never divides by 0."""
    return np.where(is_constant(mean, std), 1.0, std)
