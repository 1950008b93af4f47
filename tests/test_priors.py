"""The latent priors: known log densities, gradients, and the MC KL against the closed form."""

import numpy as np
import pytest
import tensorflow as tf
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from vaemix.maths.keras import tfd
from vaemix.maths.priors import MixturePrior, StandardNormalPrior, component_log_posterior


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_mixture_log_prob_is_logsumexp_of_weighted_components(covariance):
    prior = MixturePrior(components=3, latent_dim=2, covariance=covariance, seed=1)
    prior.logits.assign([0.3, -1.0, 0.7])
    if covariance == "full":
        prior.scale_params.assign(tf.random.stateless_normal([3, 3], seed=[0, 1]))
    z = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)

    log_w = np.log(tf.nn.softmax(prior.logits).numpy())
    loc, chol = prior.loc.numpy(), prior.scale_tril().numpy()
    comp = np.stack([multivariate_normal(loc[k], chol[k] @ chol[k].T).logpdf(z) for k in range(3)], axis=-1)  # [5, K]
    expected = logsumexp(log_w + comp, axis=-1)
    np.testing.assert_allclose(prior().log_prob(z).numpy(), expected, rtol=1e-5, atol=1e-5)
    posterior = component_log_posterior(prior(), z).numpy()
    np.testing.assert_allclose(posterior, log_w + comp - expected[:, None], atol=1e-4)


def test_diag_covariance_is_diagonal_and_full_is_not():
    diag = MixturePrior(2, 3, covariance="diag")
    full = MixturePrior(2, 3, covariance="full")
    full.scale_params.assign(tf.ones_like(full.scale_params))
    assert np.count_nonzero(np.tril(diag.scale_tril().numpy()[0], -1)) == 0
    assert np.count_nonzero(np.tril(full.scale_tril().numpy()[0], -1)) == 3


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_every_prior_variable_gets_a_gradient(covariance):
    prior = MixturePrior(components=4, latent_dim=3, covariance=covariance)
    z = tf.random.stateless_normal([16, 3], seed=[1, 2])
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(prior().log_prob(z))
    grads = tape.gradient(loss, prior.trainable_variables)
    assert len(prior.trainable_variables) == 3
    for v, g in zip(prior.trainable_variables, grads, strict=True):
        assert g is not None, v.name
        assert np.all(np.isfinite(g.numpy())) and np.any(g.numpy() != 0), v.name


def test_assign_sets_weights_means_and_covariances():
    prior = MixturePrior(components=2, latent_dim=2)
    cov = np.array([[[2.0, 0.5], [0.5, 1.0]], [[1.0, 0.0], [0.0, 3.0]]], np.float32)
    prior.assign([0.25, 0.75], [[1.0, 2.0], [-1.0, 0.0]], cov)
    mix = prior()
    np.testing.assert_allclose(mix.mixture_distribution.probs_parameter(), [0.25, 0.75], rtol=1e-6)
    np.testing.assert_allclose(mix.components_distribution.covariance(), cov, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(mix.components_distribution.mean(), [[1, 2], [-1, 0]])


def test_standard_normal_prior_has_no_variables_and_unit_density():
    prior = StandardNormalPrior(latent_dim=4)
    assert prior.trainable_variables == ()
    np.testing.assert_allclose(prior().log_prob(tf.zeros([4])).numpy(), -2 * np.log(2 * np.pi), rtol=1e-6)


def test_mc_kl_matches_analytic_kl_for_normal_prior():
    from vaemix.maths.objectives import reparameterize

    rng = np.random.default_rng(3)
    loc = rng.normal(size=(4, 3)).astype(np.float32)
    tril = np.tril(rng.normal(size=(4, 3, 3))).astype(np.float32) * 0.5
    tril[:, range(3), range(3)] = np.abs(tril[:, range(3), range(3)]) + 0.3
    q = tfd.MultivariateNormalTriL(loc, tril)
    p = StandardNormalPrior(3)()
    z = reparameterize(loc, tril, tf.random.stateless_normal([200_000, 4, 3], seed=[4, 5]))  # [S, B, D]
    mc_kl = tf.reduce_mean(q.log_prob(z) - p.log_prob(z), axis=0).numpy()
    np.testing.assert_allclose(mc_kl, tfd.kl_divergence(q, p).numpy(), rtol=0.02, atol=0.01)
