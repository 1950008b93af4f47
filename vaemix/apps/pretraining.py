"""A fresh run's start, before the ELBO phase: the networks pretrained as an autoencoder, then the prior
fitted to their latent means (``prior.init``).

With ``trainer.pretrain_candidates=N`` this is done N times, from N seeds (fresh weights, data order and
augmentation), and one candidate is kept by ``trainer.pretrain_choice``, scored on the *training* latents
under its fitted prior: ``smallest_share`` keeps the one whose smallest cluster (argmax_k p(k|z)) holds the
largest share of them, ties to the more confident (a merge of two classes leaves another split across
two components of about half a class each); ``confidence`` keeps the one that assigns them most
confidently (mean max_k p(k|z)). No labels, and no test example, take part in the choice. Each
candidate's pretraining is checkpointed on its own (``checkpoints/pretrain``, ``checkpoints/pretrain-1``,
...), so an interrupted start resumes where it stopped; the candidates' scores are written to
``pretrain_candidates.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vaemix.apps.loop import Loop, Phase
from vaemix.apps.scoring import EVAL_BATCH, latent_means, model_report
from vaemix.apps.state import State, build_vae, pretrain_optimizer
from vaemix.apps.steps import Schedule, StepOptions, make_schedule, make_train_step, use_jit
from vaemix.infra.atomic import write_json
from vaemix.infra.checkpoints import Checkpoints
from vaemix.infra.examples import Examples
from vaemix.maths.metrics import component_shares
from vaemix.maths.networks import normalise_last_hidden, reset_encoder_scale
from vaemix.maths.prior_init import fit_prior
from vaemix.maths.priors import MixturePrior, assignments
from vaemix.maths.streams import AUGMENTATION_VIEWS, PRETRAIN_OFFSET, Stream, candidate_seed
from vaemix.maths.vae import VAE

log = logging.getLogger("vaemix")

CANDIDATES_FILE = "pretrain_candidates.json"
PRIOR_FIT_ROWS = 20_000  # the prior's initial mixture is fitted to at most this many latent means
_START_SCALE = 0.1  # q(z|x)'s standard deviation when the ELBO phase starts from pretrained networks


def prior_fit_rows(train: Examples, seed: int) -> Examples:
    """The training examples whose latent means the prior is fitted to: all, or a seeded subsample."""
    if len(train) <= PRIOR_FIT_ROWS:
        return train
    rng = np.random.default_rng([seed, Stream.PRIOR_FIT_ROWS])
    return train.subset(np.sort(rng.choice(len(train), PRIOR_FIT_ROWS, replace=False)))


def pretrain(loop: Loop, vae: VAE, optimizer, schedule: Schedule, ckpt_dir: Path, name: str, seed: int) -> None:
    """The encoder and decoder as an autoencoder (z = encoder mean), resumable on its own in ``ckpt_dir``;
    ``seed`` orders the data and draws the augmentations."""
    ckpts = Checkpoints(ckpt_dir, 2, loop.chief, encoder=vae.encoder, decoder=vae.decoder, optimizer=optimizer)
    ckpts.restore()
    optimizer.learning_rate.assign(loop.cfg.trainer.pretrain_lr)  # the config's, not the checkpoint's
    start = int(optimizer.iterations.numpy())
    if start:
        log.info("resuming %s at step %d", name, start)
    t = loop.cfg.trainer
    options = StepOptions(
        seed=seed,
        jit=use_jit(t.jit, loop.cfg.model.architecture, t.precision),
        kl_samples=0,
        beta=lambda _: 0.0,
        contrastive=t.pretrain_contrastive,
        temperature=t.temperature,
    )
    step, check = make_train_step(vae, [(optimizer, vae.network_variables)], loop.strategy, schedule, options)
    views = AUGMENTATION_VIEWS if t.pretrain_contrastive else 1
    loop.run(Phase(name, schedule, step, check, ckpts, seed, views=views), start)
    ckpts.close()


def _fresh_networks(loop: Loop, vae: VAE, seed: int):
    """Give the networks the initial weights of seed ``seed``; return a fresh pretraining optimizer."""
    cfg = loop.cfg
    fresh = build_vae(loop.data.shape, cfg.model, cfg.prior, seed)
    vae.encoder.set_weights(fresh.encoder.get_weights())
    vae.decoder.set_weights(fresh.decoder.get_weights())
    with loop.strategy.scope():
        return pretrain_optimizer(cfg, vae)


def _candidate(loop: Loop, state: State, run_dir: Path, c: int) -> dict:
    """Pretrain candidate ``c`` and fit the prior to its latents; return its record."""
    cfg, vae = loop.cfg, state.vae
    seed = candidate_seed(cfg.seed, c)
    optimizer = _fresh_networks(loop, vae, seed) if c else state.pre_optimizer
    if cfg.trainer.pretrain_epochs:
        replicas, t = loop.strategy.num_replicas_in_sync, cfg.trainer
        schedule = make_schedule(len(loop.data.train), t.batch_size, replicas, t.pretrain_epochs, None)
        name = "pretrain" + (f"-{c}" if c else "")
        pretrain(loop, vae, optimizer, schedule, run_dir / "checkpoints" / name, name, seed + PRETRAIN_OFFSET)
        reset_encoder_scale(vae.encoder, vae.latent_dim, _START_SCALE)
    record: dict = {"candidate": c, "seed": seed}
    rows = prior_fit_rows(loop.data.train, cfg.seed)
    if cfg.trainer.pretrain_epochs and cfg.model.sphere_radius:
        record["hidden_norm"] = normalise_last_hidden(vae.encoder, vae.latent_dim, rows.batches(EVAL_BATCH))
    if cfg.prior.init != "random" and isinstance(vae.prior, MixturePrior):
        z = latent_means(vae, rows)
        record["agreement"] = fit_prior(vae.prior, z, cfg.prior.init, cfg.seed, cfg.prior.init_restarts)
        clusters, record["confidence"] = assignments(vae.prior(), z)
        shares = component_shares(clusters, vae.prior.components)
        record["smallest_share"] = float(shares.min())
    return record


def candidate_score(record: dict, choice: str) -> tuple[float, ...]:
    """What ``trainer.pretrain_choice`` ranks candidates by (higher is kept)."""
    if choice == "smallest_share":
        return record["smallest_share"], record["confidence"]
    return (record["confidence"],)


def _weights(vae: VAE) -> tuple[list, list, list]:
    return vae.encoder.get_weights(), vae.decoder.get_weights(), [v.numpy() for v in vae.prior.variables]


def _set_weights(vae: VAE, weights: tuple[list, list, list]) -> None:
    encoder, decoder, prior = weights
    vae.encoder.set_weights(encoder)
    vae.decoder.set_weights(decoder)
    for variable, value in zip(vae.prior.variables, prior, strict=True):
        variable.assign(value)


def _report(loop: Loop, vae: VAE, record: dict, n: int) -> None:
    """One line per candidate; its test ACC (when labelled) is recorded and shown, never used."""
    test, _, _ = model_report(vae, loop.data.test)
    acc = test.get("cluster_acc")
    record["test_cluster_acc"] = acc
    log.info(
        "pretraining candidate %d/%d (seed %d): on the training latents smallest cluster %.3f, confidence %.4f; "
        "test cluster_acc %s",
        record["candidate"] + 1,
        n,
        record["seed"],
        record["smallest_share"],
        record["confidence"],
        "n/a" if acc is None else f"{acc:.3f}",
    )


def initialise(loop: Loop, state: State, run_dir: Path) -> dict:
    """Pretrain ``trainer.pretrain_candidates`` candidates, keep the best by ``trainer.pretrain_choice`` in
    ``state.vae``; return the kept candidate's record."""
    n, choice = loop.cfg.trainer.pretrain_candidates, loop.cfg.trainer.pretrain_choice
    records: list[dict] = []
    best, kept = None, None
    for c in range(n):
        records.append(record := _candidate(loop, state, run_dir, c))
        if n == 1:
            return record
        _report(loop, state.vae, record, n)
        if best is None or candidate_score(record, choice) > candidate_score(best, choice):
            best = record
            kept = _weights(state.vae) if c < n - 1 else None  # the last one is in the model already
    if kept is not None:
        _set_weights(state.vae, kept)
    log.info("kept pretraining candidate %d/%d (by %s)", best["candidate"] + 1, n, choice)
    if loop.chief:
        write_json(run_dir / CANDIDATES_FILE, {"kept": best["candidate"], "choice": choice, "candidates": records})
    return best
