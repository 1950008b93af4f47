"""Bayesian Gaussian mixtures: a posterior over weights, means and covariances instead of a point fit.

``method="svi"``: variational inference, full covariance (:mod:`~vaemix.maths.mixture.svi_full`, natural
gradients on a Normal-Wishart family) or diagonal (:mod:`~vaemix.maths.mixture.svi`, reparameterised
gradients); ``method="hmc"``: the full posterior by Hamiltonian Monte Carlo (:mod:`~vaemix.maths.mixture.hmc`).
Data are standardised internally (priors are set on the standardised scale) and results are reported on
the original scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vaemix.errors import VaemixError
from vaemix.maths.keras import tfd
from vaemix.maths.mixture.checks import check_data, check_options, is_constant
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
        shift, std = x.mean(0), x.std(0)
        constant = np.flatnonzero(is_constant(shift, std))  # the full covariance prior is x's: singular
        if len(constant) and (method == "hmc" or self.covariance == "full"):
            raise VaemixError(
                f"columns {constant[:8].tolist()}{' ...' if len(constant) > 8 else ''} of x are constant, and a "
                "full-covariance Bayesian mixture cannot fit them: drop them"
                + (" or use covariance='diag'" if method == "svi" else "")
            )
        scale = std + 1e-12
        z, k, a = (x - shift) / scale, self.components, self.concentration
        if method == "hmc":
            weights, means, covs, diagnostics = fit_hmc(z, k, a, self.mean_scale, self.seed, **options)
        elif self.covariance == "full":
            weights, means, covs, diagnostics = fit_full_svi(z, k, a, self.seed, **options)
        else:
            weights, means, covs, diagnostics = fit_svi(z, k, a, self.mean_scale, self.seed, **options)
        f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731  (SVI runs in float32, HMC in float64)
        s = np.diag(scale)
        self.posterior = Posterior(f64(weights), f64(means) * scale + shift, s @ f64(covs) @ s, diagnostics)
        return self
