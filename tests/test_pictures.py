"""Pictures: the latent view separates the model's components; the confusion matrix counts right."""

import matplotlib.pyplot as plt
import numpy as np

from vaemix.infra import pictures
from vaemix.infra.config import DataConfig
from vaemix.infra.tables import table_dataset
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


def test_feature_profiles_name_a_tables_features(tmp_path):
    (tmp_path / "t.csv").write_text("alcohol,hue,site\n" + "".join(f"{i},{i % 3},{'ab'[i % 2]}\n" for i in range(20)))
    data, _ = table_dataset(DataConfig(name="table", path=str(tmp_path / "t.csv"), categorical_columns=["site"]))
    assert data.features == ["alcohol", "hue", "site=a", "site=b"]
    fig, (named, many) = plt.subplots(2)
    pictures._feature_axis(named, 4, data.features)
    pictures._feature_axis(many, 40, [f"f{i}" for i in range(40)])  # too many to read: ten numbered ticks
    assert [t.get_text() for t in named.get_xticklabels()] == data.features
    assert [t.get_text() for t in many.get_xticklabels()][:2] == ["0", "4"] and len(many.get_xticks()) == 10
    plt.close(fig)
