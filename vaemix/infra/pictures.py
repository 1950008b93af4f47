"""Pictures of a model: reconstructions, samples per mixture component, the latent space, the mixture
weights. Each is a ``uint8 [H, W, 3]`` array, written as PNG and as a TensorBoard image."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: render to memory

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402

from vaemix.infra.atomic import write_bytes  # noqa: E402
from vaemix.maths.metrics import component_label_counts  # noqa: E402
from vaemix.maths.priors import MixturePrior  # noqa: E402
from vaemix.maths.streams import Stream  # noqa: E402
from vaemix.maths.vae import VAE  # noqa: E402


def image_grid(images: np.ndarray, pad: int = 1, zoom: int = 2) -> np.ndarray:
    """``[R, C, H, W, ch]`` floats in [0, 1] -> one ``uint8 [R*(H+pad)+pad, C*(W+pad)+pad, 3]`` picture,
    then each pixel repeated ``zoom`` times each way so small digits stay legible."""
    r, c, h, w, ch = images.shape
    if ch == 1:
        images = np.repeat(images, 3, axis=-1)
    grid = np.ones((r * (h + pad) + pad, c * (w + pad) + pad, 3), np.float32)
    for i in range(r):
        for j in range(c):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y : y + h, x : x + w] = images[i, j, ..., :3]
    grid = np.repeat(np.repeat(grid, zoom, axis=0), zoom, axis=1)
    return (np.clip(grid, 0, 1) * 255).round().astype(np.uint8)


def reconstructions(vae: VAE, x: np.ndarray, columns: int = 8) -> np.ndarray:
    """Inputs next to their reconstructions (decoder mean at the encoder mean): pairs, ``columns`` a row."""
    x = x[: (len(x) // columns) * columns].astype(np.float32)  # [N, H, W, C]
    rec = vae.decoder(vae.encoder(x).mean()).mean().numpy()
    pairs = np.stack([x, rec], axis=1)  # [N, 2, H, W, C]
    return image_grid(pairs.reshape(-1, 2 * columns, *x.shape[1:]))


def _component_draws(vae: VAE, per_component: int, seed: int) -> np.ndarray:
    """Decoder means of ``per_component`` draws z ~ p(z|k) for every component k: ``[K, n, *shape]``
    (one row for N(0, I))."""
    prior, stream = vae.prior(), tf.constant([seed, Stream.COMPONENT_SAMPLES])
    if isinstance(vae.prior, MixturePrior):
        z = prior.components_distribution.sample(per_component, seed=stream)  # [n, K, D]
        z = tf.transpose(z, [1, 0, 2])  # [K, n, D]
    else:
        z = prior.sample([1, per_component], seed=stream)  # [1, n, D]
    rows, n = z.shape[0], z.shape[1]
    means = vae.decoder(tf.reshape(z, [rows * n, -1])).mean().numpy()
    return means.reshape(rows, n, *means.shape[1:])


def component_samples(vae: VAE, per_component: int = 10, seed: int = 0) -> np.ndarray:
    """Row k: ``per_component`` draws z ~ p(z|k) decoded to their mean image."""
    return image_grid(_component_draws(vae, per_component, seed))


def _feature_axis(ax, features: int, names: list[str] | None = None) -> None:
    """Ticks for ``features`` features: each by its name when there are names and at most 30, else numbers."""
    ax.set_xlabel("feature")
    if names is not None and len(names) == features <= 30:
        ax.set_xticks(range(features), names, rotation=60, ha="right", fontsize=7)
    else:
        ax.set_xticks(range(features) if features <= 30 else np.linspace(0, features - 1, 10).astype(int))
    ax.axhline(0.0, color="grey", lw=0.5)


def component_profiles(vae: VAE, per_component: int = 50, seed: int = 0, names: list[str] | None = None) -> np.ndarray:
    """What each component stands for in a table: the mean decoded row of draws from p(z|k) (a line a
    component, in standardised units) with the middle 80% of the draws shaded; ``names`` label the features."""
    draws = _component_draws(vae, per_component, seed)  # [K, n, F]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * draws.shape[-1]), 4))
    for k, d in enumerate(draws):
        colour = plt.cm.tab10(k % 10)
        ax.plot(d.mean(0), color=colour, lw=1.5, label=f"component {k}")
        ax.fill_between(range(d.shape[-1]), *np.percentile(d, [10, 90], axis=0), color=colour, alpha=0.15)
    _feature_axis(ax, draws.shape[-1], names)
    ax.set_ylabel("decoded value (standardised)")
    ax.set_title("components as feature profiles")
    ax.legend(fontsize=7, ncol=2)
    return figure_array(fig)


def reconstruction_profiles(vae: VAE, x: np.ndarray, rows: int = 4, names: list[str] | None = None) -> np.ndarray:
    """Table rows (solid) next to their reconstructions (dashed), standardised units; ``names`` label the
    features (on the last row's axis)."""
    x = x[:rows]
    rec = vae.decoder(vae.encoder(x).mean()).mean().numpy()
    fig, axes = plt.subplots(len(x), 1, figsize=(max(6.0, 0.25 * x.shape[1]), 1.6 * len(x)), squeeze=False)
    for i, (ax, row, out) in enumerate(zip(axes[:, 0], x, rec, strict=True)):
        ax.plot(row, color="black", lw=1.2)
        ax.plot(out, color="tab:red", lw=1.2, ls="--")
        _feature_axis(ax, x.shape[1], names if i == len(x) - 1 else None)
    axes[0, 0].set_title("rows (solid) and reconstructions (dashed)")
    return figure_array(fig)


def figure_array(fig: plt.Figure) -> np.ndarray:
    """Render a matplotlib figure to ``uint8 [H, W, 3]`` and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return tf.io.decode_png(buf.getvalue(), channels=3).numpy()


def _projection(z: np.ndarray, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Centre and 2-D projection ``P [D, 2]``: the first two dims when D <= 2; else the linear discriminants
    of the model's own components (the two directions that best separate them; no labels), or PCA when
    fewer than three components are used."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    mean = z.mean(axis=0)
    if z.shape[1] <= 2:
        return mean, np.eye(z.shape[1], 2), "z"
    if len(np.unique(clusters)) >= 3:
        lda = LinearDiscriminantAnalysis(n_components=2).fit(z, clusters)
        return lda.xbar_, lda.scalings_[:, :2], "discriminant "
    _, _, vt = np.linalg.svd(z - mean, full_matrices=False)
    return mean, vt[:2].T, "PC"


def latent_space(z: np.ndarray, clusters: np.ndarray, labels: np.ndarray | None, prior=None) -> np.ndarray:
    """Scatter of encoder means coloured by component (and by label when known), with each component's
    2-sigma ellipse projected the same way."""
    mean, proj, axis_name = _projection(z, clusters)
    pts = (z - mean) @ proj  # [N, 2]
    panels = [("by component", clusters)] + ([("by label", labels)] if labels is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5), squeeze=False)
    for ax, (title, colour) in zip(axes[0], panels, strict=True):
        ax.scatter(pts[:, 0], pts[:, 1], c=colour, cmap="tab10", s=4, alpha=0.7)
        if isinstance(prior, MixturePrior):
            locs = (prior.loc.numpy() - mean) @ proj  # [K, 2]
            chol = prior.scale_tril().numpy()
            for k, (loc, cov) in enumerate(zip(locs, proj.T @ (chol @ chol.transpose(0, 2, 1)) @ proj, strict=True)):
                vals, vecs = np.linalg.eigh(cov)
                angle = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1]))
                w, h = 4 * np.sqrt(np.maximum(vals[::-1], 1e-12))
                ax.add_patch(Ellipse(loc, w, h, angle=angle, fill=False, lw=1, color=plt.cm.tab10(k % 10)))
                ax.annotate(str(k), loc, fontsize=8, ha="center", va="center")
        ax.set_title(f"latent means {title}")
        ax.set_xlabel(f"{axis_name}1")
        ax.set_ylabel(f"{axis_name}2")
    return figure_array(fig)


def confusion(clusters: np.ndarray, labels: np.ndarray, components: int) -> np.ndarray:
    """Component-by-label counts, each row shaded by its share of the component, with every component's
    size, majority label and purity (the majority's share) at the right."""
    values, counts = component_label_counts(clusters, labels, components)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(0.55 * len(values) + 3.5, 0.4 * components + 1.5))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for (k, j), c in np.ndenumerate(counts):
        if c:
            ax.text(
                j, k, str(c), ha="center", va="center", fontsize=7, color="white" if shares[k, j] > 0.5 else "black"
            )
    for k in range(components):
        size = counts[k].sum()
        note = f"n={size}, {values[counts[k].argmax()]}: {counts[k].max() / size:.0%}" if size else "empty"
        ax.text(len(values) - 0.3, k, note, va="center", fontsize=7)
    ax.set_xticks(range(len(values)), [str(v) for v in values])
    ax.set_yticks(range(components))
    ax.set_xlabel("label")
    ax.set_ylabel("component")
    purity = counts.max(1).sum() / counts.sum()
    ax.set_title(f"components against labels (purity {purity:.3f})")
    return figure_array(fig)


def mixture_weights(prior: MixturePrior) -> np.ndarray:
    """Bar chart of the prior's mixture weights."""
    probs = prior().mixture_distribution.probs_parameter().numpy()
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(np.arange(len(probs)), probs, color=[plt.cm.tab10(k % 10) for k in range(len(probs))])
    ax.axhline(1 / len(probs), color="grey", ls="--", lw=1)
    ax.set_xlabel("component k")
    ax.set_ylabel("weight")
    ax.set_title("mixture weights")
    return figure_array(fig)


def all_pictures(
    vae: VAE,
    x: np.ndarray,
    z: np.ndarray,
    clusters: np.ndarray | None,
    labels: np.ndarray | None,
    seed: int = 0,
    features: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Every picture of the model by name; ``x`` model inputs (images ``[n, H, W, C]`` in [0, 1] or table
    rows ``[n, F]``, whose feature names ``features`` label the profiles) for reconstructions, ``z`` [N, D]
    encoder means and ``clusters`` their components."""
    if x.ndim == 2:  # table rows
        pictures = {
            "reconstructions": reconstruction_profiles(vae, x, names=features),
            "samples": component_profiles(vae, seed=seed, names=features),
        }
    else:
        pictures = {"reconstructions": reconstructions(vae, x), "samples": component_samples(vae, seed=seed)}
    pictures["latent"] = latent_space(z, clusters if clusters is not None else np.zeros(len(z), int), labels, vae.prior)
    if isinstance(vae.prior, MixturePrior):
        pictures["weights"] = mixture_weights(vae.prior)
        if clusters is not None and labels is not None:
            pictures["confusion"] = confusion(clusters, labels, vae.prior.components)
    return pictures


def save_png(path: str | Path, picture: np.ndarray) -> None:
    write_bytes(path, tf.io.encode_png(picture).numpy())


def density_picture(dist, x: np.ndarray) -> np.ndarray:
    """Log density of a 2-D distribution over a grid around the data ``x [N, 2]``, with the data on top."""
    lo, hi = x.min(0) - 1, x.max(0) + 1
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 150), np.linspace(lo[1], hi[1], 150))
    grid = np.stack([g0.ravel(), g1.ravel()], 1)
    dens = dist.log_prob(grid).numpy().reshape(g0.shape)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.contourf(g0, g1, np.maximum(dens, dens.max() - 12), levels=30, cmap="viridis")
    ax.scatter(x[:, 0], x[:, 1], s=2, c="white", alpha=0.4)
    ax.set_title("fitted log density")
    return figure_array(fig)
