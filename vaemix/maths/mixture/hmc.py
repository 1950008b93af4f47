"""The posterior of a full-covariance Bayesian Gaussian mixture by Hamiltonian Monte Carlo.

Dirichlet / Normal / Wishart priors over weights, means and precision matrices; the chains move the
weights, the means and the precisions' Cholesky factors in an unconstrained space (stick-breaking and
``FillScaleTriL`` bijectors; ``IteratedSigmoidCentered`` for the weights, since TFP 0.25's
``SoftmaxCentered`` fails under NumPy 2.4), with step-size adaptation and several chains.
Components have no order, so each draw is matched to a reference fit before averaging (label switching).
Works on standardised data (see :class:`~vaemix.maths.mixture.bayesian.BayesianGaussianMixture`).
"""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from scipy.optimize import linear_sum_assignment

from vaemix.maths.keras import tfb, tfd
from vaemix.maths.mixture.gmm import GaussianMixture


def log_joint(x: tf.Tensor, components: int, concentration: float, mean_scale: float):
    """``target(w [C, K], mu [C, K, D], chol [C, K, D, D]) -> [C]``: log prior + log likelihood of ``x [N, D]``
    under precision matrices ``chol chol^T``."""
    d = x.shape[-1]
    prior_w = tfd.Dirichlet(tf.fill([components], tf.constant(concentration, tf.float64)))
    prior_mu = tfd.Normal(tf.constant(0.0, tf.float64), mean_scale)
    prior_prec = tfd.WishartTriL(
        df=tf.constant(d + 2.0, tf.float64), scale_tril=tf.eye(d, dtype=tf.float64), input_output_cholesky=True
    )
    chol_outer = tfb.CholeskyOuterProduct()

    def target(w, mu, chol):
        # log N(x; mu, (L L^T)^-1) = sum log diag(L) - |L^T (x - mu)|^2 / 2 - D/2 log 2 pi
        diff = x[None, None] - mu[:, :, None]  # [C, K, N, D]
        proj = tf.einsum("ckij,ckni->cknj", chol, diff)  # L^T (x - mu)
        log_norm = (
            tf.reduce_sum(tf.math.log(tf.linalg.diag_part(chol)), -1)[..., None]
            - 0.5 * tf.reduce_sum(proj**2, -1)
            - 0.5 * d * np.log(2 * np.pi)
        )  # [C, K, N]
        loglik = tf.reduce_sum(tf.reduce_logsumexp(tf.math.log(w)[..., None] + log_norm, axis=1), -1)
        # The Wishart density is over P = L L^T; the chain moves L, so add log |dP/dL|.
        log_prior = (
            prior_w.log_prob(w)
            + tf.reduce_sum(prior_mu.log_prob(mu), [-2, -1])
            + tf.reduce_sum(prior_prec.log_prob(chol) + chol_outer.forward_log_det_jacobian(chol, 2), -1)
        )
        return loglik + log_prior

    return target


def _kernel(target, num_burnin: int, leapfrog_steps: int) -> tfp.mcmc.TransitionKernel:
    hmc = tfp.mcmc.HamiltonianMonteCarlo(
        target, step_size=tf.constant(0.05, tf.float64), num_leapfrog_steps=leapfrog_steps
    )
    tiny = tf.constant(1e-6, tf.float64)
    bijectors = [tfb.IteratedSigmoidCentered(), tfb.Identity(), tfb.FillScaleTriL(diag_shift=tiny)]
    unconstrained = tfp.mcmc.TransformedTransitionKernel(hmc, bijector=bijectors)
    return tfp.mcmc.SimpleStepSizeAdaptation(unconstrained, num_adaptation_steps=int(0.8 * num_burnin))


def _match_to_reference(w: np.ndarray, mu: np.ndarray, chol: np.ndarray, ref_means: np.ndarray) -> None:
    """Permute each draw's components (in place) to best match ``ref_means``: undo label switching."""
    for s in range(w.shape[0]):
        for c in range(w.shape[1]):
            rows, cols = linear_sum_assignment(np.sum((mu[s, c][:, None] - ref_means[None]) ** 2, -1))
            perm = rows[np.argsort(cols)]
            w[s, c], mu[s, c], chol[s, c] = w[s, c][perm], mu[s, c][perm], chol[s, c][perm]


def _diagnostics(states: list[np.ndarray], accepted: np.ndarray, seconds: float) -> dict:
    tensors = [tf.constant(a) for a in states]
    ess = min(float(tfp.mcmc.effective_sample_size(s, cross_chain_dims=1).numpy().min()) for s in tensors)
    rhat = max(float(tfp.mcmc.potential_scale_reduction(s).numpy().max()) for s in tensors)
    return {
        "acceptance_rate": float(np.mean(accepted)),
        "min_ess": ess,
        "max_rhat": rhat,
        "ess_per_second": ess / seconds,
        "seconds": seconds,
    }


def fit_hmc(
    z: np.ndarray,
    components: int,
    concentration: float,
    mean_scale: float,
    seed: int,
    num_results: int = 500,
    num_burnin: int = 500,
    chains: int = 4,
    leapfrog_steps: int = 8,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Posterior mean weights ``[K]``, means ``[K, D]``, covariances ``[K, D, D]`` and the chains' diagnostics."""
    target = log_joint(tf.constant(z, tf.float64), components, concentration, mean_scale)
    ref = GaussianMixture(components, n_init=3, seed=seed).fit(z)
    jitter = np.random.default_rng(seed).normal(scale=0.05, size=(chains, components, z.shape[1]))
    init = [
        tf.constant(np.tile(ref.weights_, (chains, 1))),
        tf.constant(ref.means_[None] + jitter),
        tf.constant(np.tile(np.linalg.cholesky(np.linalg.inv(ref.covariances_)), (chains, 1, 1, 1))),
    ]
    kernel = _kernel(target, num_burnin, leapfrog_steps)

    @tf.function(jit_compile=True)
    def run(seed):
        return tfp.mcmc.sample_chain(
            num_results,
            init,
            kernel=kernel,
            num_burnin_steps=num_burnin,
            seed=seed,
            trace_fn=lambda _, r: r.inner_results.inner_results.is_accepted,
        )

    t0 = time.perf_counter()
    (w, mu, chol), accepted = run(tf.constant([seed, 0]))  # [S, C, ...]
    seconds = time.perf_counter() - t0
    w, mu, chol = w.numpy(), mu.numpy(), chol.numpy()
    _match_to_reference(w, mu, chol, ref.means_)
    cov = np.linalg.inv(chol @ np.swapaxes(chol, -1, -2))  # [S, C, K, D, D]
    diagnostics = _diagnostics([w, mu, cov], accepted.numpy(), seconds)
    return w.mean((0, 1)), mu.mean((0, 1)), cov.mean((0, 1)), diagnostics
