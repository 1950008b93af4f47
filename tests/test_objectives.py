"""The ELBO through real networks: the MC rate against the closed-form KL, the IWAE bound, gradients."""

import numpy as np
import pytest
import tensorflow as tf

from vaemix.maths.keras import keras, tfd
from vaemix.maths.likelihoods import LogitBernoulli
from vaemix.maths.networks import build_decoder, build_encoder
from vaemix.maths.objectives import autoencoder_terms, elbo, iwae_bound, latent_noise
from vaemix.maths.priors import build_prior
from vaemix.maths.vae import VAE

SHAPE = (6, 5, 1)


def _vae(prior: str, architecture: str = "mlp", likelihood: str = "bernoulli") -> VAE:
    arch = dict(architecture=architecture, hidden=[16], filters=[4, 8], conv_dense=8)
    encoder = build_encoder(SHAPE, 3, **arch)
    decoder = build_decoder(SHAPE, 3, likelihood=likelihood, **arch)
    return VAE(encoder, decoder, build_prior(prior, 3, components=4))


def _images(n: int = 7) -> tf.Tensor:
    return tf.random.stateless_uniform([n, *SHAPE], seed=[0, 0])


def test_rate_with_many_samples_matches_analytic_kl_for_normal_prior():
    vae, x = _vae("normal"), _images()
    terms = elbo(vae, x, latent_noise(0, 0, [100_000, 7, 3]))
    analytic = tfd.kl_divergence(vae.encoder(x), vae.prior()).numpy()  # [B]
    np.testing.assert_allclose(terms.rate.numpy(), analytic, rtol=0.02, atol=0.01)


def test_distortion_is_bernoulli_cross_entropy_of_decoded_sample():
    vae, x = _vae("gmm"), _images(2)
    noise = latent_noise(0, 1, [1, 2, 3])
    q = vae.encoder(x)
    z = q.loc + tf.einsum("bij,bj->bi", q.scale.to_dense(), noise[0])
    logits = vae.decoder(z).distribution.logits  # Independent(Bernoulli) -> [B, H, W, C]
    bce = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits), axis=[1, 2, 3])
    np.testing.assert_allclose(elbo(vae, x, noise).distortion.numpy(), bce.numpy(), rtol=1e-5)


@pytest.mark.parametrize("architecture,likelihood", [("mlp", "bernoulli"), ("conv", "gaussian")])
def test_iwae_bound_is_at_least_the_elbo(architecture, likelihood):
    vae, x = _vae("gmm", architecture, likelihood), _images()
    terms = elbo(vae, x, latent_noise(0, 2, [500, 7, 3]))
    assert terms.log_weights.shape == (500, 7)
    assert np.all(iwae_bound(terms.log_weights).numpy() >= terms.elbo.numpy() - 1e-3)


def _elbo_and_grads(vae, x, noise, xla: bool):
    with tf.GradientTape() as tape:
        terms = elbo(vae, x, noise, xla=xla)
        loss = -tf.reduce_mean(terms.elbo)
    return terms, tape.gradient(loss, vae.trainable_variables)


@pytest.mark.parametrize("prior", ["gmm", "normal"])
def test_xla_latent_maths_give_the_same_terms_and_gradients(prior):
    vae, x, noise = _vae(prior), _images(), latent_noise(0, 4, [3, 7, 3])
    (plain, plain_grads), (xla, xla_grads) = (_elbo_and_grads(vae, x, noise, xla) for xla in (False, True))
    for a, b in zip(plain, xla, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
    for a, b in zip(plain_grads, xla_grads, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-5)


def test_bernoulli_log_prob_and_its_written_out_gradients_match_tfp():
    logits = tf.constant([[-30.0, -2.0, 0.0], [0.5, 3.0, 40.0]])
    events = tf.constant([[0.0, 1.0, 0.3], [1.0, 0.0, 1.0]])  # in [0, 1], as with dynamic or soft targets
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([logits, events])
        ours = LogitBernoulli(logits=logits).log_prob(events)
        reference = tfd.Bernoulli(logits=logits).log_prob(events)
    np.testing.assert_allclose(ours.numpy(), reference.numpy(), rtol=1e-6, atol=1e-6)
    for wrt in (logits, events):
        np.testing.assert_allclose(
            tape.gradient(ours, wrt).numpy(), tape.gradient(reference, wrt).numpy(), rtol=1e-6, atol=1e-6
        )
    np.testing.assert_allclose(tape.gradient(ours, logits).numpy(), (events - tf.sigmoid(logits)).numpy(), atol=1e-7)


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_every_trainable_variable_gets_a_gradient(architecture):
    vae, x = _vae("gmm", architecture), _images()
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(elbo(vae, x, latent_noise(0, 3, [2, 7, 3])).elbo)
    grads = tape.gradient(loss, vae.trainable_variables)
    names = [v.name for v in vae.trainable_variables]
    assert any("logits" in n for n in names) and any("loc" in n for n in names)
    missing = [n for n, g in zip(names, grads, strict=True) if g is None or not np.any(g.numpy() != 0)]
    assert not missing


def test_conv_decoder_keeps_parameter_blocks_per_pixel():
    """The Gaussian conv head's locations must come out in image layout (not interleaved)."""
    vae = _vae("gmm", "conv", "gaussian")
    p = vae.decoder(tf.zeros([2, 3]))
    assert p.event_shape == SHAPE and p.batch_shape == (2,)
    assert np.all(p.distribution.scale.numpy() > 1e-3)


def test_reset_encoder_scale_keeps_the_mean_and_sets_a_small_isotropic_scale():
    from vaemix.maths.networks import reset_encoder_scale

    vae, x = _vae("gmm"), _images()
    before = vae.encoder(x).mean().numpy()
    reset_encoder_scale(vae.encoder, 3, 0.1)
    q = vae.encoder(x)
    np.testing.assert_allclose(q.mean().numpy(), before, atol=1e-6)
    np.testing.assert_allclose(q.covariance().numpy(), np.broadcast_to(0.01 * np.eye(3), (7, 3, 3)), atol=1e-6)


def _sphere_encoder(architecture: str):
    from vaemix.maths.networks import reset_encoder_scale

    keras.utils.set_random_seed(0)  # both calls of a test build the same weights
    arch = dict(architecture=architecture, hidden=[16, 32], filters=[4, 8], conv_dense=32)
    encoder = build_encoder(SHAPE, 3, sphere_radius=3.0, **arch)
    reset_encoder_scale(encoder, 3, 0.1)
    return encoder


def _scale_after_one_adam_step(encoder, x: tf.Tensor) -> np.ndarray:
    """q's scale diagonals after one Adam step of the ELBO on the encoder alone (a fresh optimizer)."""
    keras.utils.set_random_seed(1)
    decoder = build_decoder(SHAPE, 3, likelihood="bernoulli", architecture="mlp", hidden=[16])
    vae = VAE(encoder, decoder, build_prior("gmm", 3, components=4))
    with tf.GradientTape() as tape:
        terms = elbo(vae, x, latent_noise(0, 0, [1, 7, 3]))
        loss = tf.reduce_mean(terms.rate + terms.distortion)
    grads = tape.gradient(loss, encoder.trainable_variables)
    keras.optimizers.Adam(1e-3).apply_gradients(zip(grads, encoder.trainable_variables, strict=True))
    return np.diagonal(encoder(x).scale.to_dense().numpy(), axis1=-2, axis2=-1)


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_normalise_last_hidden_keeps_q_and_takes_the_shock_out_of_the_first_elbo_step(architecture):
    """Pretraining leaves the last hidden layer at any size; the ELBO's first Adam step then moved q's
    zeroed scale head by ~lr x its L1 norm (a held-out loss of 8,101 -> 1,093,385 nats on 5,000 features)."""
    from vaemix.maths.networks import normalise_last_hidden

    x = 1e4 * _images()  # inputs that make the hidden layer large, as a wide table's do
    shocked = _scale_after_one_adam_step(_sphere_encoder(architecture), x)
    encoder = _sphere_encoder(architecture)  # the same initial weights
    before = encoder(x)
    layer = encoder.layers[encoder.layers.index(encoder.get_layer("latent_params")) - 1]
    size = np.linalg.norm(keras.Model(encoder.inputs, layer.output)(x).numpy(), axis=-1).mean()
    assert normalise_last_hidden(encoder, 3, [x[:4], x[4:]]) == pytest.approx(size, rel=1e-5)
    after = encoder(x)
    np.testing.assert_allclose(after.mean().numpy(), before.mean().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(after.covariance().numpy(), before.covariance().numpy(), atol=1e-6)
    hidden = keras.Model(encoder.inputs, layer.output)(x).numpy()
    assert np.linalg.norm(hidden, axis=-1).mean() == pytest.approx(1.0, rel=1e-4)
    assert np.abs(shocked - 0.1).max() > 10.0  # q's scale started at 0.1; the old first step moved it 20-59
    assert np.abs(_scale_after_one_adam_step(encoder, x) - 0.1).max() < 0.1  # now 0.015-0.05


def test_normalise_last_hidden_leaves_an_encoder_whose_last_layer_is_dead_as_it_is():
    from vaemix.maths.networks import normalise_last_hidden

    encoder, x = _sphere_encoder("mlp"), _images()
    layer = encoder.layers[encoder.layers.index(encoder.get_layer("latent_params")) - 1]
    kernel, bias = layer.get_weights()
    layer.set_weights([np.zeros_like(kernel), np.full_like(bias, -1.0)])  # every unit off on every row
    before = [w.copy() for w in encoder.get_weights()]
    assert normalise_last_hidden(encoder, 3, [x]) == 1.0  # not a division by zero
    for a, b in zip(encoder.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_autoencoder_terms_are_the_zero_noise_distortion_and_ignore_an_overflowing_scale():
    """Pretraining never trains q's scale: with large inputs it overflowed and stopped MNIST's pixels as
    784-d rows as a 'non-finite kl'. The autoencoder's terms are the same distortion without it."""
    vae, x = _vae("gmm"), _images()
    zero = tf.zeros([1, 7, 3])
    terms = autoencoder_terms(vae, x)
    np.testing.assert_allclose(terms.distortion.numpy(), elbo(vae, x, zero).distortion.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(terms.rate.numpy(), np.zeros(7))
    head = vae.encoder.get_layer("latent_params")
    kernel, bias = head.get_weights()
    kernel[:, 3:] = 3e38  # the scale outputs overflow float32, the mean outputs are untouched
    head.set_weights([kernel, bias])
    assert not np.all(np.isfinite(elbo(vae, x, zero).rate.numpy()))
    np.testing.assert_allclose(autoencoder_terms(vae, x).distortion.numpy(), terms.distortion.numpy(), rtol=1e-6)


def _tril(diag: float, off: float, d: int = 10) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.tril(off * rng.standard_normal([4, d, d]), -1) + diag * np.eye(d)  # [B, D, D]


def test_log_q_of_a_sample_has_tfp_log_probs_value_and_gradients():
    from vaemix.maths.objectives import log_q_of_sample

    loc, tril64, noise = np.ones([4, 10]), _tril(0.7, 0.3), latent_noise(1, 0, [3, 4, 10])
    with tf.GradientTape(persistent=True) as tape:
        tril, tril_ref = tf.constant(tril64, tf.float32), tf.constant(tril64)
        tape.watch([tril, tril_ref])
        ours = log_q_of_sample(tril, noise)  # [S, B]
        lower = tf.linalg.band_part(tril_ref, -1, 0)  # the networks' factor has no upper triangle
        z = loc + tf.einsum("bij,sbj->sbi", lower, tf.cast(noise, tf.float64))
        ref = tfd.MultivariateNormalTriL(loc, tril_ref).log_prob(z)  # through z and through q
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-5)
    np.testing.assert_allclose(tape.gradient(ours, tril).numpy(), tape.gradient(ref, tril_ref).numpy(), atol=1e-4)


def test_log_q_of_a_sample_stays_exact_where_the_triangular_solve_fails():
    """The ELBO phase of MNIST's pixels as 784-d rows drove q's Cholesky factor to diagonals of ~3e-5
    under off-diagonals of ~9: solving for the noise then returned log q = -inf and stopped the run."""
    from vaemix.maths.objectives import log_q_of_sample

    tril, noise = tf.constant(_tril(2.7e-5, 9.0), tf.float32), latent_noise(1, 0, [3, 4, 10])
    n = noise.numpy().astype(np.float64)
    closed_form = -5 * np.log(2 * np.pi) - 0.5 * (n**2).sum(-1) - 10 * np.log(2.7e-5)  # [S, B]
    np.testing.assert_allclose(log_q_of_sample(tril, noise).numpy(), closed_form, rtol=1e-5)
    solved = tfd.MultivariateNormalTriL(tf.zeros([4, 10]), tril).log_prob(tf.einsum("bij,sbj->sbi", tril, noise))
    assert not np.allclose(solved.numpy(), closed_form, rtol=0.1)
