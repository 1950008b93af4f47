"""Pictures: the latent view separates the model's components; the confusion matrix counts right."""

import numpy as np

from vaemix.infra import pictures
from vaemix.maths.metrics import cluster_separation, component_label_counts


def test_latent_view_is_the_discriminant_one_that_separates_components():
    """Three clusters apart along a low-variance direction, hidden under one high-variance direction:
    PCA's first two axes overlap them, the discriminant projection keeps them apart."""
    rng = np.random.default_rng(0)
    clusters = np.repeat(np.arange(3), 300)
    z = rng.normal(size=(900, 6)) * np.array([10.0, 10.0, 0.3, 0.3, 0.3, 0.3])
    z[:, 5] += 3.0 * clusters  # apart only in the last dim
    mean, proj, name = pictures._projection(z, clusters)
    assert name.startswith("discriminant") and proj.shape == (6, 2)
    pca = np.linalg.svd(z - z.mean(0), full_matrices=False)[2][:2].T
    assert cluster_separation((z - mean) @ proj, clusters) > 0.6 > 0.1 > cluster_separation(z @ pca, clusters)
    mean, proj, name = pictures._projection(z, clusters % 2)  # two components: no 2-D discriminant view
    assert name == "PC"


def test_confusion_counts_and_picture():
    labels = np.array([0, 0, 1, 1, 1, 2])
    clusters = np.array([1, 1, 0, 0, 2, 2])
    values, counts = component_label_counts(clusters, labels, 4)
    np.testing.assert_array_equal(values, [0, 1, 2])
    np.testing.assert_array_equal(counts, [[0, 2, 0], [2, 0, 0], [0, 1, 1], [0, 0, 0]])
    picture = pictures.confusion(clusters, labels, components=4)  # component 3 empty
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
