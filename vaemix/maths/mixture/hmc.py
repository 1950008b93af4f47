"""The posterior of a full-covariance Bayesian Gaussian mixture by Hamiltonian Monte Carlo.

Dirichlet / Normal / Wishart priors over weights, means and precision matrices; the likelihood goes through
the precisions' Cholesky factors (a matrix product, no triangular solve). The chains move in whitened
unconstrained coordinates: the weights by stick-breaking (``IteratedSigmoidCentered``, since TFP 0.25's
``SoftmaxCentered`` fails under NumPy 2.4), the Cholesky factors by ``FillScaleTriL``, then centred at the
posterior mode and scaled by the Laplace approximation there, so one step size suits every coordinate; the
whole chain is one XLA program with dual-averaging step-size adaptation and several chains.
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


class Whitened:
    """The posterior in whitened coordinates ``u [C, P]``: ``y = mode + A u`` is the unconstrained state
    (weights by ``IteratedSigmoidCentered``, means, precisions' Cholesky factors by ``FillScaleTriL``) and
    ``A A^T`` is the inverse of the negative Hessian of the log density at the mode, so the chains see a
    posterior close to a standard normal and one step size fits every coordinate (a Laplace preconditioner)."""

    def __init__(self, target, components: int, dims: int, mode: list[np.ndarray]):
        self.target, self.k, self.d = target, components, dims
        self.bijectors = [tfb.IteratedSigmoidCentered(), tfb.FillScaleTriL(diag_shift=tf.constant(1e-6, tf.float64))]
        w, mu, chol = (tf.constant(a[None]) for a in mode)
        y = tf.concat([self.bijectors[0].inverse(w), tf.reshape(mu, [1, -1]), self._chol_inverse(chol)], -1)
        self.mode, self.scale = self._laplace(y[0])  # [P], [P, P]

    def _chol_inverse(self, chol: tf.Tensor) -> tf.Tensor:
        return tf.reshape(self.bijectors[1].inverse(chol), [tf.shape(chol)[0], -1])

    def constrain(self, y: tf.Tensor) -> tuple[list[tf.Tensor], tf.Tensor]:
        """``y [C, P]`` -> ``[w, mu, chol]`` and the log |Jacobian| ``[C]``."""
        k, d, c = self.k, self.d, tf.shape(y)[0]
        yw, ymu, ychol = tf.split(y, [k - 1, k * d, k * d * (d + 1) // 2], axis=-1)
        ychol = tf.reshape(ychol, [c, k, d * (d + 1) // 2])
        w, chol = self.bijectors[0].forward(yw), self.bijectors[1].forward(ychol)
        ldj = self.bijectors[0].forward_log_det_jacobian(yw, 1) + tf.reduce_sum(
            self.bijectors[1].forward_log_det_jacobian(ychol, 1), -1
        )
        return [w, tf.reshape(ymu, [c, k, d]), chol], ldj

    def log_density(self, y: tf.Tensor) -> tf.Tensor:
        parts, ldj = self.constrain(y)
        return self.target(*parts) + ldj

    def _curvature(self, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Gradient ``[P]`` and the eigen-decomposition of the negative Hessian at ``y [P]``, its eigenvalues
        floored at 1 so that a flat or non-concave direction gets a unit scale instead of an infinite one."""
        hessian, grad = self._hessian(y)
        eigvals, eigvecs = tf.linalg.eigh(-0.5 * (hessian + tf.transpose(hessian)))
        return grad, tf.maximum(eigvals, 1.0), eigvecs

    @tf.function
    def _hessian(self, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``[P, P]`` and ``[P]`` at ``y [P]``, traced once (the Jacobian is a loop over ``P`` otherwise)."""
        with tf.GradientTape() as outer:
            outer.watch(y)
            with tf.GradientTape() as inner:
                inner.watch(y)
                value = self.log_density(y[None])
            grad = inner.gradient(value, y)
        return outer.jacobian(grad, y), grad

    def _laplace(self, y: tf.Tensor, newton_steps: int = 20) -> tuple[tf.Tensor, tf.Tensor]:
        """The posterior mode (Newton's method from the maximum-likelihood fit, which the priors move) and
        ``A`` with ``A A^T = (-H)^-1`` there."""
        value = float(self.log_density(y[None])[0])
        for _ in range(newton_steps):
            grad, eigvals, eigvecs = self._curvature(y)
            step = tf.linalg.matvec(eigvecs, tf.linalg.matvec(eigvecs, grad, transpose_a=True) / eigvals)
            for _ in range(30):  # backtrack until the density rises: far from the mode a full step overshoots
                trial = float(self.log_density((y + step)[None])[0])
                if np.isfinite(trial) and trial >= value:
                    break
                step = 0.5 * step
            else:
                break
            y, value = y + step, trial
            if float(tf.reduce_max(tf.abs(step))) < 1e-6:
                break
        _, eigvals, eigvecs = self._curvature(y)
        return y, eigvecs * tf.math.rsqrt(eigvals)[None]

    def __call__(self, u: tf.Tensor) -> tf.Tensor:
        return self.log_density(self.mode[None] + tf.matmul(u, self.scale, transpose_b=True))

    def to_parameters(self, u: tf.Tensor) -> list[tf.Tensor]:
        """Draws ``u [S, C, P]`` -> ``[w [S, C, K], mu [S, C, K, D], chol [S, C, K, D, D]]``."""
        s, c = tf.shape(u)[0], tf.shape(u)[1]
        y = self.mode[None] + tf.matmul(tf.reshape(u, [s * c, -1]), self.scale, transpose_b=True)
        parts, _ = self.constrain(y)
        return [tf.reshape(p, tf.concat([[s, c], tf.shape(p)[1:]], 0)) for p in parts]


def _kernel(target, num_burnin: int, leapfrog_steps: int, step_size: float) -> tfp.mcmc.TransitionKernel:
    hmc = tfp.mcmc.HamiltonianMonteCarlo(
        target, step_size=tf.constant(step_size, tf.float64), num_leapfrog_steps=leapfrog_steps
    )
    return tfp.mcmc.DualAveragingStepSizeAdaptation(
        hmc, num_adaptation_steps=int(0.8 * num_burnin), target_accept_prob=tf.constant(0.75, tf.float64)
    )


def _match_to_reference(w: np.ndarray, mu: np.ndarray, chol: np.ndarray, ref_means: np.ndarray) -> None:
    """Permute each draw's components (in place) to best match ``ref_means``: undo label switching."""
    for s in range(w.shape[0]):
        for c in range(w.shape[1]):
            rows, cols = linear_sum_assignment(np.sum((mu[s, c][:, None] - ref_means[None]) ** 2, -1))
            perm = rows[np.argsort(cols)]
            w[s, c], mu[s, c], chol[s, c] = w[s, c][perm], mu[s, c][perm], chol[s, c][perm]


def _diagnostics(states: list[np.ndarray], accepted: np.ndarray, seconds: float) -> dict:
    tensors, logger = [tf.constant(a) for a in states], tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # TFP's autocorrelation drops its FFT's imaginary part on purpose and warns of it
    try:
        ess = min(float(tfp.mcmc.effective_sample_size(s, cross_chain_dims=1).numpy().min()) for s in tensors)
    finally:
        logger.setLevel(level)
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
    leapfrog_steps: int = 4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Posterior mean weights ``[K]``, means ``[K, D]``, covariances ``[K, D, D]`` and the chains' diagnostics.
    The chains start at independent draws of the Laplace approximation around an EM fit."""
    t0 = time.perf_counter()
    target = log_joint(tf.constant(z, tf.float64), components, concentration, mean_scale)
    ref = GaussianMixture(components, n_init=3, seed=seed).fit(z)
    mode = [ref.weights_, ref.means_, np.linalg.cholesky(np.linalg.inv(ref.covariances_))]
    whitened = Whitened(target, components, z.shape[1], mode)
    start = tf.constant(np.random.default_rng(seed).normal(size=(chains, whitened.mode.shape[0])))
    kernel = _kernel(whitened, num_burnin, leapfrog_steps, 1.5 / whitened.mode.shape[0] ** 0.25)

    @tf.function(jit_compile=True)
    def run(seed):
        draws, accepted = tfp.mcmc.sample_chain(
            num_results,
            start,
            kernel=kernel,
            num_burnin_steps=num_burnin,
            seed=seed,
            trace_fn=lambda _, r: r.inner_results.is_accepted,
        )
        return whitened.to_parameters(draws), accepted

    (w, mu, chol), accepted = run(tf.constant([seed, 0]))  # [S, C, ...]
    seconds = time.perf_counter() - t0
    w, mu, chol = w.numpy(), mu.numpy(), chol.numpy()
    _match_to_reference(w, mu, chol, ref.means_)
    cov = np.linalg.inv(chol @ np.swapaxes(chol, -1, -2))  # [S, C, K, D, D]
    diagnostics = _diagnostics([w, mu, cov], accepted.numpy(), seconds)
    return w.mean((0, 1)), mu.mean((0, 1)), cov.mean((0, 1)), diagnostics
