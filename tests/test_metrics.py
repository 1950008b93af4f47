"""Clustering metrics against hand-worked answers, and the model's clusters through the prior."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from vaemix.maths.metrics import cluster_accuracy, cluster_separation, clustering_metrics, most_agreed
from vaemix.maths.priors import MixturePrior, assignments, most_probable_component


def test_hungarian_matching_hand_worked():
    # clusters 1->label 0 (2 right), 0->label 1 (2 right), 2->label 2 (1 right): 5 of 6.
    assert cluster_accuracy([0, 0, 1, 1, 2, 2], [1, 1, 0, 0, 0, 2]) == pytest.approx(5 / 6)
    assert cluster_accuracy([3, 3, 7, 7], [0, 0, 1, 1]) == 1.0
    assert cluster_accuracy([0, 1, 2, 3], [0, 0, 0, 0]) == 0.25


def test_separated_blobs_through_the_prior_are_recovered_exactly():
    rng = np.random.default_rng(0)
    centres = np.array([[10.0, 0.0], [-10.0, 0.0], [0.0, 10.0]])
    labels = rng.integers(0, 3, size=300)
    z = centres[labels] + rng.normal(size=(300, 2))
    prior = MixturePrior(components=3, latent_dim=2)
    prior.assign([1 / 3] * 3, centres[[2, 0, 1]], np.stack([np.eye(2)] * 3))  # components in another order
    clusters = most_probable_component(prior(), z.astype(np.float32))
    m = clustering_metrics(labels, clusters, 3)
    assert m["cluster_acc"] == 1.0 and m["nmi"] == pytest.approx(1.0) and m["ari"] == pytest.approx(1.0)
    assert m["components_used"] == 3


def test_shares_of_the_components_hand_worked():
    m = clustering_metrics(None, np.array([0, 0, 0, 1, 1, 3, 3, 3]), 4)  # component 2 is empty
    assert m == {"components_used": 3, "largest_share": 3 / 8, "smallest_share": 0.0}
    assert clustering_metrics(None, np.array([1, 0, 1, 0]), 2)["smallest_share"] == 0.5


def test_most_agreed_keeps_the_clustering_the_others_repeat():
    a = np.array([0, 0, 1, 1, 2, 2, 2])
    relabelled = np.array([2, 2, 0, 0, 1, 1, 1])  # the same partition under other names
    odd = np.array([0, 1, 0, 1, 0, 1, 0])
    near = np.array([0, 0, 1, 1, 2, 2, 1])  # one point moved
    index, agreement = most_agreed([odd, a, near, relabelled])
    assert index in (1, 3)  # a and its relabelling tie, and beat the others
    expected = (adjusted_rand_score(a, odd) + adjusted_rand_score(a, near) + 1.0) / 3
    assert agreement == pytest.approx(expected)
    assert most_agreed([odd]) == (0, 1.0)


def test_label_free_signals_tell_separated_from_merged_clusters():
    """Two well-separated blobs split in two: silhouette near 1, confidence near 1; one blob cut in half:
    silhouette near 0.6 (the closed form for a cut 1-d Gaussian is ~0.5-0.6), confidence lower."""
    rng = np.random.default_rng(0)
    two = np.concatenate([rng.normal(-10, 1, size=(500, 1)), rng.normal(10, 1, size=(500, 1))])
    split = (two[:, 0] > 0).astype(int)
    assert cluster_separation(two, split) > 0.85
    one = rng.normal(0, 1, size=(1000, 1))
    halves = (one[:, 0] > 0).astype(int)
    assert 0.4 < cluster_separation(one, halves) < 0.7
    assert np.isnan(cluster_separation(one, np.zeros(1000, int)))
    prior = MixturePrior(2, 1)
    prior.assign(np.array([0.5, 0.5]), np.array([[-10.0], [10.0]]), np.ones((2, 1, 1)))
    clusters, confidence = assignments(prior(), two)
    assert confidence > 0.99 and cluster_accuracy(clusters, split) == 1.0
    prior.assign(np.array([0.5, 0.5]), np.array([[-0.1], [0.1]]), np.ones((2, 1, 1)))
    clusters, confidence = assignments(prior(), one, chunk=128)  # in chunks: the same as one pass
    assert 0.5 <= confidence < 0.55  # overlapping components: p(k|z) near 1/2
    np.testing.assert_array_equal(clusters, halves)  # the nearer mean still wins
    assert confidence == pytest.approx(assignments(prior(), one)[1], abs=1e-6)
