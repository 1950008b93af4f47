"""``export.py``: a trained run as a TF SavedModel that loads and runs with TensorFlow alone.

The exported module holds only the model's variables and ``tf.function``s traced from vaemix's own maths,
so TFP's distributions are compiled into the graph: ``tf.saved_model.load`` needs no vaemix, TFP or Keras.
A ``model_card.json`` beside it says what the model takes and what it measured.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

from vaemix.apps.restore import restore_run, run_record
from vaemix.apps.scoring import elbo_evaluator, model_report
from vaemix.apps.toolkit import fit_metrics, restore_fit
from vaemix.infra.arrays import held_out_split
from vaemix.infra.atomic import write_json
from vaemix.infra.config import Config
from vaemix.infra.datasets import load_dataset
from vaemix.infra.examples import Preprocessing
from vaemix.infra.rundir import load_run_config, recorded_commands
from vaemix.infra.tables import TableSpec, load_table
from vaemix.maths.likelihoods import score_name
from vaemix.maths.metrics import majority_labels
from vaemix.maths.mixture import MixtureDensityNetwork
from vaemix.maths.mixture.fitted import FittedMixture
from vaemix.maths.objectives import elbo, iwae_bound, latent_noise
from vaemix.maths.priors import MixturePrior, component_log_posterior
from vaemix.maths.streams import IWAE_OFFSET
from vaemix.maths.vae import VAE


def _spec(shape: list, dtype: tf.DType, name: str) -> tf.TensorSpec:
    return tf.TensorSpec(shape, dtype, name=name)


def _prepare(shape: tuple[int, ...], preprocessing: Preprocessing):
    """``inputs -> model inputs``: the shape checked first (a wrong one fails naming both shapes), then a
    table's recorded imputation and standardisation; images come in [0, 1] already."""

    def prepare(x: tf.Tensor) -> tf.Tensor:
        x = tf.ensure_shape(x, [None, *shape])
        if preprocessing.kind == "images":
            return x
        if preprocessing.fill is not None:
            x = tf.where(tf.math.is_nan(x), tf.constant(preprocessing.fill, tf.float32), x)
        mean, scale = (tf.constant(v, tf.float32) for v in (preprocessing.mean, preprocessing.scale))
        x = (x - mean) / scale
        return x if preprocessing.clip is None else tf.clip_by_value(x, -preprocessing.clip, preprocessing.clip)

    return prepare


def _vae_functions(vae: VAE, shape: tuple[int, ...], preprocessing: Preprocessing, score: str) -> dict:
    """The exported functions of a VAE as closures over it (so the module tracks variables, not models).
    They take images in [0, 1], or a table's rows in its own units (outputs in those units too)."""
    prepare = _prepare(shape, preprocessing)
    table = preprocessing.kind == "table"
    units = (
        (lambda y: y * preprocessing.scale.astype("float32") + preprocessing.mean.astype("float32"))
        if table
        else (lambda y: y)
    )

    def clusters(x: tf.Tensor) -> dict[str, tf.Tensor]:
        mean = vae.encoder(prepare(x)).mean()  # [N, D]
        if isinstance(vae.prior, MixturePrior):
            log_post = component_log_posterior(vae.prior(), mean)  # [N, K]
        else:
            log_post = tf.zeros([tf.shape(mean)[0], 1])
        return {"cluster": tf.argmax(log_post, -1), "probabilities": tf.exp(log_post), "latent_mean": mean}

    def encode(x: tf.Tensor) -> dict[str, tf.Tensor]:
        q = vae.encoder(prepare(x))
        return {"mean": q.mean(), "scale_tril": q.scale.to_dense()}

    def reconstruct(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"reconstruction": units(vae.decoder(vae.encoder(prepare(x)).mean()).mean())}

    def sample(component: tf.Tensor, n: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        """``n`` examples drawn from p(x|z), z ~ p(z|component), and their means E[x|z]."""
        z = tf.random.stateless_normal([n, vae.latent_dim], seed=seed)  # [n, D]
        if isinstance(vae.prior, MixturePrior):
            z = tf.gather(vae.prior.loc, component) + tf.linalg.matvec(tf.gather(vae.prior.scale_tril(), component), z)
        p = vae.decoder(z)
        return {"samples": units(p.sample(seed=seed + tf.constant([0, 1]))), "mean": units(p.mean())}

    def log_likelihood(x: tf.Tensor, samples: tf.Tensor) -> dict[str, tf.Tensor]:
        """The importance-weighted estimate of log p(x) (rows x samples decoder passes)."""
        noise = latent_noise(IWAE_OFFSET, 0, tf.stack([samples, tf.shape(x)[0], vae.latent_dim]))
        return {score: iwae_bound(elbo(vae, prepare(x), noise).log_weights)}

    fns = {
        "cluster_float": clusters,
        "encode": encode,
        "reconstruct": reconstruct,
        "sample": sample,
        "log_likelihood": log_likelihood,
    }
    fns["cluster"] = clusters if table else (lambda x: clusters(tf.cast(x, tf.float32) / 255.0))
    return fns


class ExportedVAE(tf.Module):
    """The VAE's functions with fixed input signatures (any batch size)."""

    def __init__(self, vae: VAE, shape: tuple[int, ...], preprocessing: Preprocessing, score: str):
        super().__init__(name="vaemix_vae")
        self.weights = [*vae.encoder.variables, *vae.decoder.variables, *vae.prior.variables]
        self.score_name, self.table = score, preprocessing.kind == "table"
        fns = _vae_functions(vae, shape, preprocessing, score)
        name = "features" if self.table else "images"
        floats = [_spec([None, *shape], tf.float32, name)]
        self.cluster = tf.function(
            fns["cluster"], input_signature=floats if self.table else [_spec([None, *shape], tf.uint8, name)]
        )
        self.cluster_float = tf.function(fns["cluster_float"], input_signature=floats)
        self.encode = tf.function(fns["encode"], input_signature=floats)
        self.reconstruct = tf.function(fns["reconstruct"], input_signature=floats)
        seeds = [_spec([], tf.int32, "component"), _spec([], tf.int32, "n"), _spec([2], tf.int32, "seed")]
        self.sample = tf.function(fns["sample"], input_signature=seeds)
        self.log_likelihood = tf.function(
            fns["log_likelihood"], input_signature=[*floats, _spec([], tf.int32, "samples")]
        )

    def signatures(self) -> dict:
        out = {
            "serving_default": self.cluster,
            "cluster": self.cluster,
            "encode": self.encode,
            "reconstruct": self.reconstruct,
            "sample": self.sample,
            self.score_name: self.log_likelihood,
        }
        return out if self.table else out | {"cluster_float": self.cluster_float}


class ExportedMixture(tf.Module):
    """A fitted mixture's density, responsibilities and sampler over ``[D]`` float64 rows."""

    def __init__(self, mixture: FittedMixture, dims: int):
        super().__init__(name="vaemix_mixture")
        self.mixture = mixture
        rows = [_spec([None, dims], tf.float64, "x")]
        self.log_prob = tf.function(lambda x: {"log_prob": self.mixture().log_prob(x)}, input_signature=rows)
        self.predict_proba = tf.function(self._proba, input_signature=rows)
        self.sample = tf.function(
            lambda n, seed: {"samples": self.mixture().sample(n, seed=seed)},
            input_signature=[_spec([], tf.int32, "n"), _spec([2], tf.int32, "seed")],
        )

    def _proba(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        log_post = component_log_posterior(self.mixture(), x)
        return {"cluster": tf.argmax(log_post, -1), "probabilities": tf.exp(log_post)}

    def signatures(self) -> dict:
        return {
            "serving_default": self.predict_proba,
            "predict_proba": self.predict_proba,
            "log_prob": self.log_prob,
            "sample": self.sample,
        }


class ExportedMDN(tf.Module):
    """A mixture density network's conditional density p(y|x), its mixture parameters and a sampler."""

    def __init__(self, mdn: MixtureDensityNetwork):
        super().__init__(name="vaemix_mdn")
        model, self.weights = mdn.model, list(mdn.model.variables)  # the Keras model only in closures

        def mixture(x: tf.Tensor) -> dict[str, tf.Tensor]:
            dist = model(x)
            comps = dist.components_distribution
            return {
                "weights": dist.mixture_distribution.probs_parameter(),
                "means": comps.mean(),
                "scale_tril": comps.scale.to_dense(),
            }

        x, y = _spec([None, mdn.input_dim], tf.float32, "x"), _spec([None, mdn.output_dim], tf.float32, "y")
        self.log_prob = tf.function(lambda x, y: {"log_prob": model(x).log_prob(y)}, input_signature=[x, y])
        self.mixture = tf.function(mixture, input_signature=[x])
        self.sample = tf.function(
            lambda x, seed: {"y": model(x).sample(seed=seed)}, input_signature=[x, _spec([2], tf.int32, "seed")]
        )

    def signatures(self) -> dict:
        return {
            "serving_default": self.mixture,
            "mixture": self.mixture,
            "log_prob": self.log_prob,
            "sample": self.sample,
        }


def _input_card(record: dict) -> dict:
    if record["kind"] == "images":
        return {
            "shape": record["shape"],
            "dtype": "uint8 0..255 (cluster, serving_default); float32 0..1 (the others)",
            "preprocessing": "pixels / 255",
            "binarize": record["binarize"],
        }
    return {
        "shape": record["shape"],
        "dtype": "float32 rows in the table's own units (NaN: missing)",
        "columns": record["columns"],
        "categories": record["categories"],
        "preprocessing": "missing values filled and each feature standardised in the graph, as training "
        "did (data.json); log-likelihoods are of the standardised rows",
    }


def _vae_export(run_dir: Path, cfg: Config, checkpoint: str | None) -> tuple[tf.Module, dict, int]:
    record = run_record(run_dir, cfg)
    data, _ = load_dataset(cfg.data, cfg.seed, record)
    _, vae, path, step = restore_run(run_dir, tuple(record["shape"]), checkpoint)
    metrics = elbo_evaluator(vae, cfg.seed, cfg.trainer.eval_samples)(data.test)
    clustering, _, _ = model_report(vae, data.test)
    score = score_name(cfg.model.likelihood, record.get("binarize", "none") != "none" or data.train.binary())
    card = {
        "kind": "vae",
        "input": _input_card(record),
        "components": getattr(vae.prior, "components", 1),
        "latent_dim": vae.latent_dim,
        "likelihood": cfg.model.likelihood,
        "score": score,
        "checkpoint": Path(path).name,
        "step": step,
        "metrics_on_test_split": {**metrics, **clustering},
    }
    if data.train.labels is not None and isinstance(vae.prior, MixturePrior):
        _, _, clusters = model_report(vae, data.train)
        card["components_to_labels"] = majority_labels(data.train.labels, clusters, vae.prior.components)
    pre = Preprocessing.from_record(record["preprocessing"]) if "preprocessing" in record else Preprocessing("images")
    return ExportedVAE(vae, tuple(record["shape"]), pre, score), card, step


def _fit_export(run_dir: Path, cfg: Config) -> tuple[tf.Module, dict, int]:
    model, record = restore_fit(run_dir, cfg)
    x, labels, _ = load_table(cfg.data, cfg.seed, TableSpec.from_record(record))
    train, test = held_out_split(len(x), cfg.data.test_fraction)
    test_labels = None if labels is None else labels[test]
    card = {
        "kind": record["kind"],
        "input": {k: v for k, v in record.items() if k != "kind"},
        "components": cfg.task.components,
        "task": cfg.task.kind,
        "metrics_on_test_split": fit_metrics(model, record, x[test], test_labels, cfg.task.components),
    }
    if isinstance(model, MixtureDensityNetwork):
        return ExportedMDN(model), card, 1
    if labels is not None:
        clusters = np.argmax(component_log_posterior(model(), tf.constant(x[train])).numpy(), -1)
        card["components_to_labels"] = majority_labels(labels[train], clusters, cfg.task.components)
    return ExportedMixture(model, record["dims"]), card, 1


def _save(module: tf.Module, card: dict, final: Path) -> None:
    """Write the SavedModel and its card to a temporary directory, then rename it into place."""
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tf.saved_model.save(module, str(tmp), signatures=module.signatures())
    write_json(tmp / "model_card.json", card)
    old = final.with_name(f".{final.name}.{os.getpid()}.old")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def export_run(run_dir: str | Path, checkpoint: str | None = None) -> Path:
    """Export ``checkpoint`` (default: latest) of ``run_dir`` to ``<run_dir>/export/<step>/``."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    if cfg.task.kind == "vae":
        module, card, step = _vae_export(run_dir, cfg, checkpoint)
    else:
        module, card, step = _fit_export(run_dir, cfg)
    card |= {
        "trained_by": recorded_commands(run_dir),
        "signatures": sorted(module.signatures()),
        "load": "tf.saved_model.load(path); needs TensorFlow only",
    }
    final = run_dir / "export" / str(step)
    _save(module, card, final)
    return final
