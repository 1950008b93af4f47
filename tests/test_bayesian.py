"""Bayesian Gaussian mixtures by SVI and HMC land on the true parameters of generated data."""

import numpy as np
import pytest

from vaemix.errors import VaemixError
from vaemix.maths.mixture.bayesian import BayesianGaussianMixture

MEANS = np.array([[-3.0, -3.0], [0.0, 0.0], [3.0, 3.0]])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    labels = rng.choice(3, size=600, p=[0.2, 0.5, 0.3])
    return MEANS[labels] + rng.normal(size=(600, 2)), np.array([0.2, 0.5, 0.3])


def _matched(posterior_means: np.ndarray) -> np.ndarray:
    return np.array([int(np.argmin(np.sum((posterior_means - m) ** 2, 1))) for m in MEANS])


def test_svi_posterior_means_recover_the_truth(data):
    x, weights = data
    post = BayesianGaussianMixture(3, seed=0).fit(x, "svi", epochs=100).posterior
    order = _matched(post.means)
    np.testing.assert_allclose(post.means[order], MEANS, atol=0.25)
    np.testing.assert_allclose(post.weights[order], weights, atol=0.06)
    np.testing.assert_allclose(np.diagonal(post.covariances[order], axis1=1, axis2=2), 1.0, atol=0.3)


def test_hmc_posterior_recovers_the_truth_with_healthy_chains(data):
    x, weights = data
    model = BayesianGaussianMixture(3, seed=0).fit(x, "hmc", num_results=400, num_burnin=400, chains=4)
    post = model.posterior
    order = _matched(post.means)
    np.testing.assert_allclose(post.means[order], MEANS, atol=0.25)
    np.testing.assert_allclose(post.weights[order], weights, atol=0.06)
    np.testing.assert_allclose(post.covariances[order], np.stack([np.eye(2)] * 3), atol=0.35)
    diag = post.diagnostics
    assert 0.5 <= diag["acceptance_rate"] <= 0.95
    assert diag["max_rhat"] < 1.05 and diag["min_ess"] > 50
    assert model.distribution.log_prob(x).numpy().mean() > -4.5


def test_bad_method_and_unfitted():
    with pytest.raises(VaemixError, match="choose one of: svi, hmc"):
        BayesianGaussianMixture(2).fit(np.random.default_rng(0).normal(size=(10, 2)), "gibbs")
    with pytest.raises(VaemixError, match="not fitted yet"):
        BayesianGaussianMixture(2).distribution  # noqa: B018
