"""Initialising the mixture prior from latent vectors: the consensus of restarts."""

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import adjusted_rand_score

from vaemix.maths import prior_init
from vaemix.maths.metrics import most_agreed
from vaemix.maths.prior_init import fit_prior
from vaemix.maths.priors import MixturePrior, component_log_posterior


@pytest.mark.parametrize("method", ["gmm", "kmeans"])
def test_fit_prior_finds_the_latent_clusters(method):
    rng = np.random.default_rng(1)
    centres = np.array([[5.0, 5.0], [-5.0, 5.0], [0.0, -5.0]])
    z = (centres[rng.integers(0, 3, size=900)] + 0.5 * rng.normal(size=(900, 2))).astype(np.float32)
    prior = MixturePrior(3, 2)
    fit_prior(prior, z, method, seed=0)
    found = prior.loc.numpy()[np.argsort(prior.loc.numpy()[:, 0] + 10 * prior.loc.numpy()[:, 1])]
    np.testing.assert_allclose(found, centres[np.argsort(centres[:, 0] + 10 * centres[:, 1])], atol=0.15)
    np.testing.assert_allclose(prior().mixture_distribution.probs_parameter(), [1 / 3] * 3, atol=0.06)


def test_fit_prior_keeps_the_consensus_of_its_restarts(monkeypatch):
    """Five blobs on a ring and 4 components: which neighbours share one differs between restarts."""
    rng = np.random.default_rng(2)
    angles = 2 * np.pi * np.arange(5) / 5
    centres = 6.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    z = (centres[rng.integers(0, 5, size=500)] + 0.5 * rng.normal(size=(500, 2))).astype(np.float32)
    seen: list[list[np.ndarray]] = []
    monkeypatch.setattr(prior_init, "most_agreed", lambda labelings: seen.append(labelings) or most_agreed(labelings))
    prior = MixturePrior(4, 2)
    agreement = fit_prior(prior, z, "gmm", seed=0, restarts=6)
    (labelings,) = seen
    assert len(labelings) == 6
    index, expected = most_agreed(labelings)
    assert agreement == pytest.approx(expected) and agreement < 0.99  # the restarts did disagree
    assigned = np.argmax(component_log_posterior(prior(), tf.constant(z)).numpy(), axis=-1)
    kept = adjusted_rand_score(assigned, labelings[index])
    assert (
        kept > 0.99
        and kept > max(adjusted_rand_score(assigned, lab) for lab in labelings if lab is not labelings[index]) - 1e-9
    )
