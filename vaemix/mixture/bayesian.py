"""Bayesian Gaussian mixtures: a posterior over weights, means and covariances instead of a point fit.

* ``method="svi"``: stochastic variational inference with a diagonal-covariance mixture. Variational
  posteriors Dirichlet (weights), Normal (means) and Gamma (per-dimension precisions); minibatch loss
  = KL(q || prior) / N - mean log-likelihood, with samples of the parameters reparameterised.
* ``method="hmc"``: Hamiltonian Monte Carlo over weights, means and Cholesky factors of full precision
  matrices with Dirichlet / Normal / Wishart priors, run in an unconstrained space (stick-breaking,
  FillScaleTriL bijectors; IteratedSigmoidCentered for the weights, since TFP 0.25's SoftmaxCentered fails
  under NumPy 2.4) with step-size adaptation and several chains, reporting acceptance rate,
  effective sample size and R-hat.

Data are standardised internally (priors are set on the standardised scale) and results are reported on
the original scale. Mixture components have no order, so posterior summaries are computed after each
draw's components are matched to a reference (the EM fit that also initialises the sampler): without
that, label switching would average different components together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from scipy.optimize import linear_sum_assignment

from vaemix.errors import UserError
from vaemix.keras import keras, tfb, tfd  # tf_keras (Keras 2)
from vaemix.mixture.gmm import GaussianMixture, check_data
from vaemix.priors import gaussian_mixture


@dataclass
class Posterior:
    """Posterior means on the data's scale plus diagnostics (HMC only: acceptance, ESS, R-hat)."""

    weights: np.ndarray  # [K]
    means: np.ndarray  # [K, D]
    covariances: np.ndarray  # [K, D, D]
    diagnostics: dict


class BayesianGaussianMixture:
    """``BayesianGaussianMixture(K).fit(x, method="svi"|"hmc")`` then ``.posterior`` and ``.distribution``."""

    def __init__(self, components: int, concentration: float = 1.0, mean_scale: float = 2.0, seed: int = 0):
        if components < 1:
            raise UserError(f"components={components} is out of range; it must be >= 1")
        self.components, self.concentration, self.mean_scale, self.seed = components, concentration, mean_scale, seed
        self.posterior: Posterior | None = None

    # -- shared ---------------------------------------------------------------------------------

    def _standardise(self, x) -> np.ndarray:
        x = check_data(x, self.components)
        self._shift, self._scale = x.mean(0), x.std(0) + 1e-12
        return (x - self._shift) / self._scale

    def _to_data_scale(self, weights, means, covs, diagnostics) -> Posterior:
        s = np.diag(self._scale)
        f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731  (SVI runs in float32, HMC in float64)
        return Posterior(f64(weights), f64(means) * self._scale + self._shift, s @ f64(covs) @ s, diagnostics)

    @property
    def distribution(self) -> tfd.MixtureSameFamily:
        """The mixture at the posterior means (float64)."""
        if self.posterior is None:
            raise UserError("this BayesianGaussianMixture is not fitted yet; call fit(x) first")
        p = self.posterior
        return gaussian_mixture(np.log(p.weights), p.means, np.linalg.cholesky(p.covariances))

    def fit(self, x, method: str = "svi", **kwargs) -> BayesianGaussianMixture:
        if method not in ("svi", "hmc"):
            raise UserError(f"method={method!r} is not allowed; choose one of: svi, hmc")
        z = self._standardise(x)
        self.posterior = self._fit_svi(z, **kwargs) if method == "svi" else self._fit_hmc(z, **kwargs)
        return self

    # -- SVI ------------------------------------------------------------------------------------

    def _fit_svi(self, z: np.ndarray, epochs: int = 200, batch_size: int = 500, lr: float = 0.03) -> Posterior:
        n, d = z.shape
        k = self.components
        init = GaussianMixture(k, covariance="diag", n_init=1, seed=self.seed).fit(z)
        f32 = lambda a: tf.constant(a, tf.float32)  # noqa: E731
        loc = tf.Variable(f32(init.means_))  # q(mu) = Normal(loc, softplus(raw_scale))
        raw_scale = tf.Variable(tf.fill([k, d], -3.0))
        log_alpha = tf.Variable(tf.fill([k, d], np.log(5.0).astype(np.float32)))  # q(precision) = Gamma
        log_beta = tf.Variable(f32(np.log(5.0 * np.stack([np.diag(c) for c in init.covariances_]))))
        log_conc = tf.Variable(f32(np.log(init.weights_ * n / 10 + 1.0)))  # q(w) = Dirichlet
        variables = [loc, raw_scale, log_alpha, log_beta, log_conc]
        prior_mu = tfd.Normal(tf.zeros([k, d]), self.mean_scale)
        # On the standardised scale a cluster's precision is usually well above 1: a broad prior, mean 4.
        prior_prec = tfd.Gamma(tf.fill([k, d], 2.0), 0.5)
        prior_w = tfd.Dirichlet(tf.fill([k], float(self.concentration)))

        def posteriors():
            return (tfd.Normal(loc, tf.nn.softplus(raw_scale)), tfd.Gamma(tf.exp(log_alpha), tf.exp(log_beta)),
                    tfd.Dirichlet(tf.exp(log_conc)))  # fmt: skip

        opt = keras.optimizers.Adam(lr)

        @tf.function
        def step(xb: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                q_mu, q_prec, q_w = posteriors()
                mu = q_mu.sample(seed=seed)  # [K, D]
                sigma = tf.math.rsqrt(q_prec.sample(seed=seed + 1))
                w = q_w.sample(seed=seed + 2)
                mix = tfd.MixtureSameFamily(tfd.Categorical(probs=w), tfd.MultivariateNormalDiag(mu, sigma))
                kl = (
                    tf.reduce_sum(tfd.kl_divergence(q_mu, prior_mu))
                    + tf.reduce_sum(tfd.kl_divergence(q_prec, prior_prec))
                    + tfd.kl_divergence(q_w, prior_w)
                )
                loss = kl / n - tf.reduce_mean(mix.log_prob(xb))
            opt.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
            return loss

        rng = np.random.default_rng(self.seed)
        data = z.astype(np.float32)
        losses = []
        for epoch in range(epochs):
            order = rng.permutation(n)
            for i in range(0, n, batch_size):
                loss = step(tf.constant(data[order[i : i + batch_size]]), tf.constant([self.seed, epoch * n + i]))
            losses.append(float(loss))
        q_mu, q_prec, q_w = posteriors()
        covs = np.stack([np.diag(1.0 / v) for v in q_prec.mean().numpy()])
        return self._to_data_scale(q_w.mean().numpy(), q_mu.mean().numpy(), covs, {"final_loss": losses[-1]})

    # -- HMC ------------------------------------------------------------------------------------

    def _fit_hmc(
        self, z: np.ndarray, num_results: int = 500, num_burnin: int = 500, chains: int = 4, leapfrog_steps: int = 8
    ) -> Posterior:
        import tensorflow_probability as tfp

        n, d = z.shape
        k = self.components
        x = tf.constant(z, tf.float64)
        prior_w = tfd.Dirichlet(tf.fill([k], tf.constant(self.concentration, tf.float64)))
        prior_mu = tfd.Normal(tf.constant(0.0, tf.float64), self.mean_scale)
        prior_prec = tfd.WishartTriL(df=tf.constant(d + 2.0, tf.float64), scale_tril=tf.eye(d, dtype=tf.float64),
                                     input_output_cholesky=True)  # fmt: skip
        chol_outer = tfb.CholeskyOuterProduct()
        tiny = tf.constant(1e-6, tf.float64)

        def target(w, mu, chol):  # [C, K], [C, K, D], [C, K, D, D] -> [C]
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
            return loglik + log_prior  # fmt: skip

        ref = GaussianMixture(k, n_init=3, seed=self.seed).fit(z)
        jitter = np.random.default_rng(self.seed).normal(scale=0.05, size=(chains, k, d))
        init = [
            tf.constant(np.tile(ref.weights_, (chains, 1))),
            tf.constant(ref.means_[None] + jitter),
            tf.constant(np.tile(np.linalg.cholesky(np.linalg.inv(ref.covariances_)), (chains, 1, 1, 1))),
        ]
        kernel = tfp.mcmc.SimpleStepSizeAdaptation(
            tfp.mcmc.TransformedTransitionKernel(
                tfp.mcmc.HamiltonianMonteCarlo(target, step_size=tf.constant(0.05, tf.float64),
                                               num_leapfrog_steps=leapfrog_steps),
                bijector=[tfb.IteratedSigmoidCentered(), tfb.Identity(), tfb.FillScaleTriL(diag_shift=tiny)],
            ),
            num_adaptation_steps=int(0.8 * num_burnin),
        )  # fmt: skip

        @tf.function(jit_compile=True)
        def run(seed):
            return tfp.mcmc.sample_chain(
                num_results,
                init,
                kernel=kernel,
                num_burnin_steps=num_burnin,
                trace_fn=lambda _, r: r.inner_results.inner_results.is_accepted,
                seed=seed,
            )

        t0 = time.perf_counter()
        (w, mu, chol), accepted = run(tf.constant([self.seed, 0]))  # [S, C, ...]
        seconds = time.perf_counter() - t0
        w, mu, chol = w.numpy(), mu.numpy(), chol.numpy()
        # Label switching: permute each draw's components to best match the reference means.
        for s in range(w.shape[0]):
            for c in range(chains):
                cost = np.sum((mu[s, c][:, None] - ref.means_[None]) ** 2, -1)
                rows, cols = linear_sum_assignment(cost)
                perm = rows[np.argsort(cols)]
                w[s, c], mu[s, c], chol[s, c] = w[s, c][perm], mu[s, c][perm], chol[s, c][perm]
        cov = np.linalg.inv(chol @ np.swapaxes(chol, -1, -2))  # [S, C, K, D, D]
        states = [tf.constant(a) for a in (w, mu, cov)]
        ess = [tfp.mcmc.effective_sample_size(s, cross_chain_dims=1).numpy() for s in states]
        rhat = [tfp.mcmc.potential_scale_reduction(s).numpy() for s in states]
        min_ess = float(min(e.min() for e in ess))
        diagnostics = {
            "acceptance_rate": float(np.mean(accepted.numpy())),
            "min_ess": min_ess,
            "max_rhat": float(max(r.max() for r in rhat)),
            "ess_per_second": min_ess / seconds,
            "seconds": seconds,
        }
        return self._to_data_scale(w.mean((0, 1)), mu.mean((0, 1)), cov.mean((0, 1)), diagnostics)
