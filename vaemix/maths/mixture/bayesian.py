"""Bayesian Gaussian mixtures: a posterior over weights, means and covariances instead of a point fit.

``method="svi"``: variational inference, full covariance (:mod:`~vaemix.maths.mixture.svi_full`, natural
gradients on a Normal-Wishart family) or diagonal (:mod:`~vaemix.maths.mixture.svi`, reparameterised
gradients); ``method="hmc"``: the full posterior by Hamiltonian Monte Carlo (:mod:`~vaemix.maths.mixture.hmc`).
Data are standardised internally (priors are set on the standardised scale) and results are reported on
the original scale; constant columns are set aside and come back as spikes at their values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vaemix.errors import VaemixError
from vaemix.maths.keras import tfd
from vaemix.maths.mixture.checks import check_data, check_options, is_constant
from vaemix.maths.mixture.gmm import REG_COVAR
from vaemix.maths.mixture.hmc import fit_hmc
from vaemix.maths.mixture.svi import fit_svi
from vaemix.maths.mixture.svi_full import fit_full_svi
from vaemix.maths.priors import gaussian_mixture


@dataclass
class Posterior:
    """Posterior means on the data's scale plus diagnostics (HMC: acceptance, ESS, R-hat)."""

    weights: np.ndarray  # [K]
    means: np.ndarray  # [K, D]
    covariances: np.ndarray  # [K, D, D]
    diagnostics: dict


class BayesianGaussianMixture:
    """``BayesianGaussianMixture(K).fit(x, method="svi"|"hmc")`` then ``.posterior`` and ``.distribution``."""

    def __init__(
        self,
        components: int,
        covariance: str = "full",
        concentration: float = 1.0,
        mean_scale: float = 2.0,
        seed: int = 0,
    ):
        check_options(components, covariance)
        self.components, self.concentration, self.mean_scale, self.seed = components, concentration, mean_scale, seed
        self.covariance = covariance
        self.posterior: Posterior | None = None

    @property
    def distribution(self) -> tfd.MixtureSameFamily:
        """The mixture at the posterior means (float64)."""
        if self.posterior is None:
            raise VaemixError("this BayesianGaussianMixture is not fitted yet; call fit(x) first")
        p = self.posterior
        return gaussian_mixture(np.log(p.weights), p.means, np.linalg.cholesky(p.covariances))

    def fit(self, x, method: str = "svi", **options) -> BayesianGaussianMixture:
        """Fit to ``x [N, D]`` by ``method``; ``options`` go to :func:`fit_svi` or :func:`fit_hmc`."""
        if method not in ("svi", "hmc"):
            raise VaemixError(f"method={method!r} is not allowed; choose one of: svi, hmc")
        x = check_data(x, self.components)
        shift, std = x.mean(0), x.std(0)  # [D]
        varying = ~is_constant(shift, std)  # a constant column tells no cluster from another
        if not varying.any():
            raise VaemixError("every column of x is constant; there is nothing to fit a mixture to")
        z, k, a = (x[:, varying] - shift[varying]) / std[varying], self.components, self.concentration
        if method == "hmc":
            weights, means, covs, diagnostics = fit_hmc(z, k, a, self.mean_scale, self.seed, **options)
        elif self.covariance == "full":
            weights, means, covs, diagnostics = fit_full_svi(z, k, a, self.seed, **options)
        else:
            weights, means, covs, diagnostics = fit_svi(z, k, a, self.mean_scale, self.seed, **options)
        f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731  (SVI runs in float32, HMC in float64)
        s = np.diag(std[varying])
        self.posterior = Posterior(
            f64(weights), *_with_constant_columns(f64(means) @ s, s @ f64(covs) @ s, shift, varying), diagnostics
        )
        return self


def _with_constant_columns(means, covs, shift: np.ndarray, varying: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means ``[K, D]`` and covariances ``[K, D, D]`` from those of the varying columns (centred, in their
    units): each constant column a spike at its value, its variance EM's floor, uncorrelated."""
    k = len(means)
    full_means = np.tile(shift, (k, 1))  # [K, D]
    full_means[:, varying] += means
    full_covs = np.tile(np.diag(np.where(varying, 0.0, REG_COVAR)), (k, 1, 1))  # [K, D, D]
    full_covs[np.ix_(np.arange(k), varying, varying)] = covs
    return full_means, full_covs
