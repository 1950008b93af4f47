"""The named random streams of vaemix: every seeded draw says here which stream it takes.

A draw is seeded by the run's ``seed`` and a stream id (and, for per-step draws, a counter), so two
features can only share random numbers if they name the same stream. ``test_streams`` checks that the
ids below are distinct.
"""

from __future__ import annotations

from enum import IntEnum


class Stream(IntEnum):
    """Second element of a NumPy ``default_rng([seed, stream, ...])`` or TF stateless seed ``[seed, stream]``."""

    STATIC_BINARIZATION = 1  # data.binarize=static|dynamic: the one draw of the binary images
    EPOCH_ORDER = 2  # the example order of each epoch: [seed, 2, epoch]
    PRIOR_LOC = 3  # the random initial means of the mixture prior
    BLOBS = 5  # generated Gaussian blobs (data=blobs)
    PRIOR_FIT_ROWS = 7  # the training rows whose latent means the prior is fitted to, on a large dataset
    COMPONENT_SAMPLES = 11  # pictures: draws from each p(z|k)


# Per-step draws are seeded [seed + offset, counter]; the offset keeps their streams apart.
LATENT_NOISE_OFFSET = 0  # q(z|x) samples of training and evaluation: [seed, step] / [seed, batch]
AUGMENTATION_OFFSET = 17  # view v of the augmented batch: [seed + 17 + v, counter]
DYNAMIC_BINARIZATION_OFFSET = 23  # data.binarize=dynamic: [seed + 23, counter]
NEIGHBOUR_OFFSET = 29  # data.neighbours: which near row a table row's second view starts from
IWAE_OFFSET = 7919  # importance samples of evaluation's log-likelihood: [seed + 7919, chunk]
PRETRAIN_OFFSET = 1_000_003  # the pretraining phase's data order and augmentation: seed + 1_000_003
CANDIDATE_OFFSET = 500_009  # trainer.pretrain_candidates: candidate c's weights and pretraining seed + 500_009 * c
RESTART_STRIDE = 1000  # restart r of the prior's initial mixture fits: seed 1000 * seed + r
AUGMENTATION_VIEWS = 2  # views the contrastive term compares


def restart_seeds(seed: int, restarts: int) -> list[int]:
    """Seeds of ``restarts`` independent fits for run ``seed``; no two runs below 1000 restarts share one."""
    return [RESTART_STRIDE * seed + r for r in range(restarts)]


def candidate_seed(seed: int, candidate: int) -> int:
    """The seed of pretraining candidate ``candidate`` of run ``seed``; candidate 0 is the run itself."""
    return seed + CANDIDATE_OFFSET * candidate
