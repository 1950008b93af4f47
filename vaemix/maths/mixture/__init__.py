"""The mixture toolkit: Gaussian mixtures fitted by EM, exact conditional and marginal mixtures, Bayesian
Gaussian mixtures (SVI and HMC) and mixture density networks. The VAE's prior is built by the same
:func:`vaemix.maths.priors.gaussian_mixture`."""

from vaemix.maths.mixture.bayesian import BayesianGaussianMixture
from vaemix.maths.mixture.conditional import condition, marginal
from vaemix.maths.mixture.gmm import GaussianMixture
from vaemix.maths.mixture.mdn import MixtureDensityNetwork

__all__ = ["BayesianGaussianMixture", "GaussianMixture", "MixtureDensityNetwork", "condition", "marginal"]
