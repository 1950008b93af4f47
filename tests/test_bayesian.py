"""Bayesian Gaussian mixtures by SVI and HMC land on the true parameters of generated data."""

import numpy as np
import pytest
from sklearn.mixture import BayesianGaussianMixture as SkBayesian

from vaemix.errors import VaemixError
from vaemix.maths.mixture.bayesian import BayesianGaussianMixture

MEANS = np.array([[-3.0, -3.0], [0.0, 0.0], [3.0, 3.0]])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    labels = rng.choice(3, size=600, p=[0.2, 0.5, 0.3])
    return MEANS[labels] + rng.normal(size=(600, 2)), np.array([0.2, 0.5, 0.3])


def _sample_means(x: np.ndarray) -> np.ndarray:
    """The generated clusters' own means (what a weak prior's posterior should find): nearest true mean."""
    nearest = np.argmin(((x[:, None] - MEANS[None]) ** 2).sum(-1), 1)
    return np.stack([x[nearest == k].mean(0) for k in range(3)])


def _matched(posterior_means: np.ndarray) -> np.ndarray:
    return np.array([int(np.argmin(np.sum((posterior_means - m) ** 2, 1))) for m in MEANS])


def test_diagonal_svi_posterior_means_recover_the_truth(data):
    x, weights = data
    post = BayesianGaussianMixture(3, "diag", seed=0).fit(x, "svi", epochs=100).posterior
    order = _matched(post.means)
    np.testing.assert_allclose(post.means[order], _sample_means(x), atol=0.25)  # minibatch gradient noise
    np.testing.assert_allclose(post.weights[order], weights, atol=0.06)
    np.testing.assert_allclose(np.diagonal(post.covariances[order], axis1=1, axis2=2), 1.0, atol=0.3)


def test_full_svi_is_scikit_learns_variational_posterior(data):
    """Same model, same priors (beta0 = 1, nu0 = D, W0^-1 = the data's covariance), same fixed point."""
    x, _ = data
    post = BayesianGaussianMixture(3, seed=0).fit(x, "svi", epochs=500, tol=1e-10).posterior
    ref = SkBayesian(
        n_components=3,
        weight_concentration_prior_type="dirichlet_distribution",
        weight_concentration_prior=1.0,
        max_iter=1000,
        tol=1e-10,
        random_state=0,
    ).fit(x)
    order = [int(np.argmin(np.sum((post.means - m) ** 2, 1))) for m in ref.means_]
    np.testing.assert_allclose(post.means[order], ref.means_, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(post.weights[order], ref.weights_, rtol=1e-3)
    np.testing.assert_allclose(post.covariances[order], ref.covariances_, rtol=1e-3, atol=1e-3)


def test_full_svi_recovers_correlated_covariances():
    rng = np.random.default_rng(1)
    covs = np.array([[[1.0, 0.8], [0.8, 1.0]], [[0.5, -0.3], [-0.3, 1.5]], [[2.0, 0.0], [0.0, 0.3]]])
    labels = rng.choice(3, size=20_000, p=[0.2, 0.5, 0.3])
    x = MEANS[labels] + np.einsum("nij,nj->ni", np.linalg.cholesky(covs)[labels], rng.normal(size=(20_000, 2)))
    post = BayesianGaussianMixture(3, seed=0).fit(x, "svi").posterior
    order = _matched(post.means)
    np.testing.assert_allclose(post.means[order], MEANS, atol=0.05)
    np.testing.assert_allclose(post.weights[order], [0.2, 0.5, 0.3], atol=0.02)
    np.testing.assert_allclose(post.covariances[order], covs, atol=0.08)


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


@pytest.mark.parametrize(
    ("covariance", "method", "options"),
    [("full", "svi", {}), ("diag", "svi", {}), ("full", "hmc", {"num_results": 20, "num_burnin": 20})],
)
def test_a_constant_column_is_a_spike_beside_the_fit_of_the_others(covariance, method, options):
    """Constant columns tell no cluster from another: the others are fitted as they are without them, and
    each is a spike at its value (its variance EM's floor, uncorrelated). A column of 0.1s, whose deviation
    rounds to 1.4e-17, is one of them; with nothing but constant columns there is nothing to fit."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    rest = rng.normal(size=(300, 2)) + 4 * np.eye(3)[y][:, :2]  # [N, 2]
    x = np.c_[np.full(300, 0.1), rest, np.full(300, 5.0)]  # columns 0 and 3 are constant
    assert x[:, 0].std() > 0
    with_them, without = (BayesianGaussianMixture(3, covariance, seed=0).fit(r, method, **options) for r in (x, rest))
    p, q = with_them.posterior, without.posterior
    np.testing.assert_allclose(p.weights, q.weights, rtol=1e-12)
    np.testing.assert_allclose(p.means[:, 1:3], q.means, rtol=1e-12)
    np.testing.assert_allclose(p.covariances[:, 1:3, 1:3], q.covariances, rtol=1e-12)
    np.testing.assert_allclose(p.means[:, [0, 3]], np.tile([0.1, 5.0], (3, 1)), rtol=1e-12)
    np.testing.assert_array_equal(p.covariances[:, [0, 3]], np.tile(np.eye(4)[[0, 3]] * 1e-6, (3, 1, 1)))
    gain = with_them.distribution.log_prob(x).numpy() - without.distribution.log_prob(rest).numpy()  # [N]
    np.testing.assert_allclose(gain, -np.log(2 * np.pi * 1e-6), atol=1e-6)  # two spikes' peaks, every row
    with pytest.raises(VaemixError, match="every column of x is constant"):
        BayesianGaussianMixture(1, covariance, seed=0).fit(np.full((10, 2), 3.0), method, **options)
