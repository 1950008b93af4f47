"""Clustering metrics: accuracy under the best matching, NMI, ARI, the consensus of clusterings, and the
label-free separation of clusters."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score


def cluster_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Accuracy under the best one-to-one matching of clusters to labels (Hungarian algorithm)."""
    labels, clusters = np.asarray(labels), np.asarray(clusters)
    _, li = np.unique(labels, return_inverse=True)
    _, ci = np.unique(clusters, return_inverse=True)
    counts = np.zeros((ci.max() + 1, li.max() + 1), np.int64)  # [clusters, labels]
    np.add.at(counts, (ci, li), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(labels))


def most_agreed(labelings: list[np.ndarray]) -> tuple[int, float]:
    """The consensus of several clusterings of the same points: the index of the one with the highest
    mean adjusted Rand index to the others, and that mean (1.0 for a single clustering)."""
    n = len(labelings)
    if n == 1:
        return 0, 1.0
    agree = np.array(
        [
            [adjusted_rand_score(a, b) if i != j else 0.0 for j, b in enumerate(labelings)]
            for i, a in enumerate(labelings)
        ]
    )
    mean = agree.sum(axis=1) / (n - 1)
    return int(np.argmax(mean)), float(mean.max())


def component_shares(clusters: np.ndarray, components: int) -> np.ndarray:
    """The fraction of the rows assigned to each component, ``[N] -> [K]``."""
    return np.bincount(clusters, minlength=components) / max(len(clusters), 1)


def clustering_metrics(labels: np.ndarray | None, clusters: np.ndarray, components: int) -> dict[str, float]:
    """ACC / NMI / ARI against ``labels`` (when known) and how the data spreads over components."""
    shares = component_shares(clusters, components)
    out = {
        "components_used": int(np.count_nonzero(shares)),
        "largest_share": float(shares.max()),
        "smallest_share": float(shares.min()),
    }
    if labels is not None:
        out |= {
            "cluster_acc": cluster_accuracy(labels, clusters),
            "nmi": float(normalized_mutual_info_score(labels, clusters)),
            "ari": float(adjusted_rand_score(labels, clusters)),
        }
    return out


def majority_labels(labels: np.ndarray, clusters: np.ndarray, components: int) -> list[dict]:
    """For each component: its size, its most common label and that label's share of it (its purity);
    label and purity are None for an empty component."""
    out = []
    for k in range(components):
        members = labels[clusters == k]
        if len(members) == 0:
            out.append({"component": k, "size": 0, "label": None, "purity": None})
            continue
        values, counts = np.unique(members, return_counts=True)
        top = int(np.argmax(counts))
        label = values[top].item()
        out.append({"component": k, "size": len(members), "label": label, "purity": counts[top] / len(members)})
    return out


def cluster_separation(z: np.ndarray, clusters: np.ndarray, seed: int = 0, sample: int = 2_000) -> float:
    """The silhouette of the clusters of ``z [N, D]`` (on at most ``sample`` rows): near 1 when clusters are
    compact and far apart, near 0 when neighbours overlap. Needs no labels; NaN with one cluster."""
    if len(np.unique(clusters)) < 2:
        return float("nan")
    size = min(sample, len(z)) if len(z) > sample else None
    return float(silhouette_score(z, clusters, sample_size=size, random_state=seed))


def component_label_counts(clusters: np.ndarray, labels: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray]:
    """The label values ``[L]`` and the counts ``[components, L]`` of each label in each component."""
    values, label_index = np.unique(labels, return_inverse=True)
    counts = np.zeros((components, len(values)), np.int64)
    np.add.at(counts, (np.asarray(clusters), label_index), 1)
    return values, counts
