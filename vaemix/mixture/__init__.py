"""The mixture toolkit: Gaussian mixtures fitted by EM, exact conditional and marginal mixtures, Bayesian
Gaussian mixtures (SVI and HMC) and mixture density networks. The VAE's prior is built by the same
:func:`vaemix.priors.gaussian_mixture`."""

from vaemix.mixture.bayesian import BayesianGaussianMixture
from vaemix.mixture.conditional import condition, marginal
from vaemix.mixture.gmm import GaussianMixture
from vaemix.mixture.mdn import MixtureDensityNetwork

__all__ = ["BayesianGaussianMixture", "GaussianMixture", "MixtureDensityNetwork", "condition", "marginal"]
