"""The mixture toolkit against closed forms and against scikit-learn."""

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from vaemix.errors import VaemixError
from vaemix.maths.mixture import GaussianMixture, condition, marginal
from vaemix.maths.mixture.conditional import rescaled
from vaemix.maths.mixture.kmeans import kmeans
from vaemix.maths.priors import MixturePrior, gaussian_mixture, most_probable_component


def _random_mixture(rng, k: int, d: int):
    w = rng.dirichlet(np.ones(k))
    mu = rng.normal(size=(k, d)) * 2
    a = rng.normal(size=(k, d, d))
    cov = a @ a.transpose(0, 2, 1) / d + 0.3 * np.eye(d)
    return w, mu, cov, gaussian_mixture(np.log(w), mu, np.linalg.cholesky(cov))


def _numpy_condition(w, mu, cov, o, u, v):
    """Reference: the textbook formulas, one component and one value row at a time."""
    weights, locs, covs = [], [], []
    for k in range(len(w)):
        s_oo, s_uo, s_uu = cov[k][np.ix_(o, o)], cov[k][np.ix_(u, o)], cov[k][np.ix_(u, u)]
        gain = s_uo @ np.linalg.inv(s_oo)
        locs.append(mu[k][u] + gain @ (v - mu[k][o]))
        covs.append(s_uu - gain @ s_uo.T)
        weights.append(np.log(w[k]) + multivariate_normal(mu[k][o], s_oo).logpdf(v))
    weights = np.exp(np.array(weights) - logsumexp(weights))
    return weights, np.array(locs), np.array(covs)


@pytest.mark.parametrize("d", [2, 3, 5, 8])
def test_condition_matches_the_closed_form_for_every_split(d):
    rng = np.random.default_rng(d)
    w, mu, cov, mix = _random_mixture(rng, k=3, d=d)
    for n_obs in range(1, d):
        o = np.sort(rng.choice(d, n_obs, replace=False))
        u = np.setdiff1d(np.arange(d), o)
        values = rng.normal(size=(4, n_obs)) * 2
        cond = condition(mix, o, values)
        assert cond.batch_shape == (4,) and cond.event_shape == (d - n_obs,)
        probs = cond.mixture_distribution.probs_parameter().numpy()
        locs, covs = cond.components_distribution.mean().numpy(), cond.components_distribution.covariance().numpy()
        for i, v in enumerate(values):
            ew, el, ec = _numpy_condition(w, mu, cov, o, u, v)
            np.testing.assert_allclose(probs[i], ew, atol=1e-8)
            np.testing.assert_allclose(locs[i], el, atol=1e-8)
            np.testing.assert_allclose(covs[i], ec, atol=1e-8)


def test_marginal_matches_the_closed_form_and_integrates_out_dims():
    rng = np.random.default_rng(0)
    w, mu, cov, mix = _random_mixture(rng, k=4, d=5)
    idx = [3, 0]
    m = marginal(mix, idx)
    x = rng.normal(size=(6, 2))
    expected = logsumexp(
        [np.log(w[k]) + multivariate_normal(mu[k][idx], cov[k][np.ix_(idx, idx)]).logpdf(x) for k in range(4)], axis=0
    )
    np.testing.assert_allclose(m.log_prob(x).numpy(), expected, atol=1e-8)


def test_rescaled_is_the_law_of_the_shifted_and_scaled_variable():
    rng = np.random.default_rng(1)
    w, mu, cov, mix = _random_mixture(rng, k=3, d=4)
    shift, scale = rng.normal(size=4) * 10, np.array([0.01, 1.0, 7.0, 300.0])
    out = rescaled(mix, shift, scale)
    x = rng.normal(size=(6, 4)) * 2
    y = shift + scale * x
    # the density of y = shift + scale * x is x's divided by the Jacobian prod(scale)
    np.testing.assert_allclose(out.log_prob(y).numpy(), mix.log_prob(x).numpy() - np.log(scale).sum(), atol=1e-8)
    np.testing.assert_allclose(out.components_distribution.mean().numpy(), shift + scale * mu, atol=1e-8)
    expected_cov = cov * scale[:, None] * scale[None, :]
    np.testing.assert_allclose(out.components_distribution.covariance().numpy(), expected_cov, rtol=1e-8)
    np.testing.assert_allclose(out.mixture_distribution.probs_parameter().numpy(), w, atol=1e-12)
    with pytest.raises(VaemixError, match="scale must be positive"):
        rescaled(mix, shift, np.array([1.0, 0.0, 1.0, 1.0]))


def test_condition_works_on_the_vae_prior():
    prior = MixturePrior(components=3, latent_dim=4)
    cond = condition(prior(), [1], [[0.5], [-0.5]])
    assert cond.event_shape == (3,) and np.allclose(cond.mixture_distribution.probs_parameter().numpy().sum(-1), 1)


def test_bad_condition_arguments():
    _, _, _, mix = _random_mixture(np.random.default_rng(0), 2, 3)
    with pytest.raises(VaemixError, match="cover all 3 dimensions"):
        condition(mix, [0, 1, 2], [[1, 2, 3]])
    with pytest.raises(VaemixError, match=r"must be distinct dimensions in \[0, 3\)"):
        condition(mix, [0, 5], [[1, 2]])
    with pytest.raises(VaemixError, match="2 columns for 1 observed"):
        condition(mix, [0], [[1, 2]])


def _blobs(rng, n=3000):
    means = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    covs = np.array([[[1.0, 0.5], [0.5, 1.0]], [[0.5, 0.0], [0.0, 2.0]], [[1.5, -0.7], [-0.7, 1.0]]])
    weights = np.array([0.5, 0.3, 0.2])
    labels = rng.choice(3, size=n, p=weights)
    x = np.stack([rng.multivariate_normal(means[k], covs[k]) for k in labels])
    return x, labels, weights, means, covs


def test_gmm_recovers_parameters_and_matches_sklearn_likelihood():
    from sklearn.mixture import GaussianMixture as SkGMM

    rng = np.random.default_rng(0)
    x, labels, weights, means, covs = _blobs(rng)
    gmm = GaussianMixture(3, n_init=3, seed=0).fit(x)
    order = [int(np.argmin(np.sum((gmm.means_ - m) ** 2, 1))) for m in means]  # match components
    np.testing.assert_allclose(gmm.means_[order], means, atol=0.15)
    np.testing.assert_allclose(gmm.covariances_[order], covs, atol=0.2)
    np.testing.assert_allclose(gmm.weights_[order], weights, atol=0.03)
    sk = SkGMM(3, n_init=3, random_state=0).fit(x)
    assert abs(gmm.log_prob(x).mean() - sk.score(x)) <= 0.01 * abs(sk.score(x))
    assert (gmm.predict(x) == np.array(order)[labels]).mean() > 0.95
    np.testing.assert_allclose(gmm.predict_proba(x[:5]).sum(1), 1.0)
    assert gmm.sample(100).shape == (100, 2)
    assert gmm.bic(x) < GaussianMixture(1).fit(x).bic(x)


def test_diag_gmm_has_diagonal_covariances():
    x, *_ = _blobs(np.random.default_rng(1), 600)
    gmm = GaussianMixture(3, covariance="diag").fit(x)
    off = gmm.covariances_ * (1 - np.eye(2))
    assert np.all(off == 0) and gmm.num_parameters() == 3 * 2 + 3 * 2 + 2


def test_kmeans_finds_separated_groups():
    x, labels, *_ = _blobs(np.random.default_rng(2), 600)
    found = kmeans(x, 3, seed=0)
    from vaemix.maths.metrics import cluster_accuracy

    assert cluster_accuracy(labels, found) > 0.9


@pytest.mark.parametrize(
    "x,k,message",
    [
        (np.array([[0.0, np.nan], [1.0, 2.0]]), 1, "1 rows with NaN or inf"),
        (np.zeros(5), 1, r"must be a non-empty \[N, D\] array"),
        (np.random.default_rng(0).normal(size=(3, 2)), 5, "3 distinct points for 5 components"),
        (np.ones((50, 2)), 2, "1 distinct points for 2 components"),
    ],
)
def test_bad_data_is_a_clear_error(x, k, message):
    with pytest.raises(VaemixError, match=message):
        GaussianMixture(k).fit(x)


def _start(x, k, seed=0):
    """A deliberately rough start: k random rows as means, the data's covariance for every component."""
    rng = np.random.default_rng(seed)
    return np.full(k, 1 / k), x[rng.choice(len(x), k, replace=False)], np.tile(np.cov(x.T), (k, 1, 1))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_em_follows_sklearn_from_the_same_start(covariance):
    """Same start, same 25 EM iterations: the same parameters and log-likelihood (EM is deterministic)."""
    from sklearn.mixture import GaussianMixture as SkGMM

    x, *_ = _blobs(np.random.default_rng(3), 2000)
    weights, means, covs = _start(x, 3)
    ours = GaussianMixture(3, covariance, max_iter=25, tol=0.0).fit(x, init=(weights, means, covs))
    precisions = np.linalg.inv(covs) if covariance == "full" else 1 / np.diagonal(covs, axis1=1, axis2=2)
    sk = SkGMM(
        3,
        covariance_type=covariance,
        max_iter=25,
        tol=0.0,
        weights_init=weights,
        means_init=means,
        precisions_init=precisions,
    ).fit(x)
    np.testing.assert_allclose(ours.log_prob(x).mean(), sk.score(x), rtol=1e-6)
    np.testing.assert_allclose(ours.means_, sk.means_, rtol=1e-5, atol=1e-6)
    sk_covs = sk.covariances_ if covariance == "full" else np.stack([np.diag(c) for c in sk.covariances_])
    np.testing.assert_allclose(ours.covariances_, sk_covs, rtol=1e-5, atol=1e-6)
    assert ours.n_iter_ == 25 and not ours.converged_


def test_streamed_fits_equal_the_in_memory_fit(tmp_path):
    """A .npy read from disk, a memory map and a tf.data.Dataset in uneven batches: the in-memory fit to
    float64 rounding (the blocks only change the order of the sums)."""
    import tensorflow as tf

    from vaemix.infra.arrays import NpyRows

    x, *_ = _blobs(np.random.default_rng(4), 5000)
    np.save(tmp_path / "x.npy", x)
    memory = GaussianMixture(3, n_init=2, seed=1, block=5000).fit(x)
    for source in (np.load(tmp_path / "x.npy", mmap_mode="r"), NpyRows(tmp_path / "x.npy")):
        streamed = GaussianMixture(3, n_init=2, seed=1, block=777).fit(source)
        np.testing.assert_allclose(streamed.means_, memory.means_, rtol=1e-6)
        np.testing.assert_allclose(streamed.covariances_, memory.covariances_, rtol=1e-6)
        np.testing.assert_allclose(streamed.mean_log_likelihood_, memory.mean_log_likelihood_, rtol=1e-6)
    init = (memory.weights_, memory.means_, memory.covariances_)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(613)
    from_dataset = GaussianMixture(3).fit(dataset, init=init)
    from_memory = GaussianMixture(3).fit(x, init=init)
    np.testing.assert_allclose(from_dataset.means_, from_memory.means_, rtol=1e-6)
    np.testing.assert_allclose(from_dataset.mean_log_likelihood_, from_memory.mean_log_likelihood_, rtol=1e-6)


def test_float32_fit_is_close_to_float64():
    x, *_ = _blobs(np.random.default_rng(5), 3000)
    f64 = GaussianMixture(3, seed=0).fit(x)
    f32 = GaussianMixture(3, seed=0, dtype="float32").fit(x)
    np.testing.assert_allclose(f32.mean_log_likelihood_, f64.mean_log_likelihood_, rtol=1e-4)


def test_bad_streams_are_clear_errors(tmp_path):
    import tensorflow as tf

    empty = tf.data.Dataset.from_tensor_slices(np.zeros((0, 2))).batch(10)
    with pytest.raises(VaemixError, match="dataset to fit is empty"):
        GaussianMixture(2).fit(empty)
    with pytest.raises(VaemixError, match=r"must yield \[B, D\] batches"):
        GaussianMixture(2).fit(tf.data.Dataset.from_tensor_slices(np.zeros((10, 2, 2))).batch(5))
    x, *_ = _blobs(np.random.default_rng(6), 400)
    x[350, 1] = np.nan  # past the rows that seed the fit: found by the E-step
    with pytest.raises(VaemixError, match="rows with NaN or inf"):
        GaussianMixture(2, init_sample=100).fit(tf.data.Dataset.from_tensor_slices(x).batch(100))
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(VaemixError, match="1 rows with NaN or inf"):
        GaussianMixture(2).fit(np.load(tmp_path / "x.npy", mmap_mode="r"))
    with pytest.raises(VaemixError, match=r"non-empty \[N, D\] array"):
        GaussianMixture(2).fit(np.zeros((0, 3)))


def test_unfitted_gmm_is_a_clear_error():
    with pytest.raises(VaemixError, match="not fitted yet"):
        GaussianMixture(2).distribution  # noqa: B018


def _bimodal(rng, n):
    """y = +-x^2 (equally likely) plus noise whose scale grows with |x|; returns x, y and the true NLL."""
    x = rng.uniform(-1, 1, size=(n, 1))
    sign = rng.choice([-1.0, 1.0], size=(n, 1))
    scale = 0.05 + 0.1 * np.abs(x)
    y = sign * x**2 + scale * rng.normal(size=(n, 1))
    dens = (
        0.5
        * (np.exp(-0.5 * ((y - x**2) / scale) ** 2) + np.exp(-0.5 * ((y + x**2) / scale) ** 2))
        / (scale * np.sqrt(2 * np.pi))
    )
    return x, y, float(-np.mean(np.log(dens)))


def test_mdn_learns_a_bimodal_heteroscedastic_conditional():
    from vaemix.maths.mixture import MixtureDensityNetwork

    rng = np.random.default_rng(0)
    x, y, _ = _bimodal(rng, 4000)
    xt, yt, true_nll = _bimodal(rng, 2000)
    mdn = MixtureDensityNetwork(1, 1, components=3, hidden=(32, 32))
    losses = mdn.fit(x, y, epochs=150)
    assert losses[-1] < losses[0]
    assert mdn.nll(xt, yt) <= true_nll + 0.15
    dist = mdn.predict(np.array([[0.8]]))
    modes = np.sort(
        dist.components_distribution.mean().numpy()[0, :, 0][
            dist.mixture_distribution.probs_parameter().numpy()[0] > 0.2
        ]
    )
    assert modes[0] == pytest.approx(-0.64, abs=0.1) and modes[-1] == pytest.approx(0.64, abs=0.1)
    with pytest.raises(VaemixError, match="x has 2 columns"):
        mdn.predict(np.zeros((3, 2)))


def test_the_mdn_fits_rows_in_any_units_alike():
    """Inputs and targets are standardised within, so a fit to (1000 x, y / 1000) is the fit to (x, y): its
    held-out log-likelihood differs by the Jacobian, log 1000, and its modes are in y's units. (Fitted
    as they were, y in thousands cost 229 nats a row and x in thousands 1 nat.)"""
    from vaemix.maths.mixture import MixtureDensityNetwork

    rng = np.random.default_rng(0)
    (x, y, _), (xt, yt, _) = _bimodal(rng, 2000), _bimodal(rng, 1000)
    nll, modes = [], []
    for a, b in ((1.0, 1.0), (1000.0, 1e-3)):
        mdn = MixtureDensityNetwork(1, 1, components=3, hidden=(32, 32))
        mdn.fit(x * a, y * b, epochs=60)
        nll.append(mdn.nll(xt * a, yt * b))
        dist = mdn.predict(np.array([[0.8 * a]]))
        weights = dist.mixture_distribution.probs_parameter().numpy()[0]  # [K]
        modes.append(np.sort(dist.components_distribution.mean().numpy()[0, weights > 0.2, 0]) / b)
    assert nll[0] - nll[1] == pytest.approx(np.log(1000.0), abs=1e-3), nll
    np.testing.assert_allclose(modes[1], modes[0], atol=1e-3)
    assert modes[0][0] == pytest.approx(-0.64, abs=0.1) and modes[0][-1] == pytest.approx(0.64, abs=0.1)


@pytest.mark.parametrize("task", ["gmm", "bgmm_svi", "mdn"])
def test_train_py_tasks_on_blobs_write_metrics_and_pictures(task, tmp_path):
    import json

    from conftest import compose_config
    from vaemix.apps.toolkit import fit_task

    cfg = compose_config(f"task={task}", "data=blobs", "data.n=600", "task.epochs=30")
    m = fit_task(cfg, tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["task"] == task and saved["num_test"] == 120
    if task == "mdn":
        assert np.isfinite(m["test_nll"])
    else:
        assert (tmp_path / "density.png").exists() and m["test_log_likelihood"] > -6
    if task == "gmm":
        assert m["cluster_acc"] > 0.9 and m["converged"]


def test_table_task_reads_csv_with_a_header(tmp_path):
    from conftest import compose_config
    from vaemix.apps.toolkit import fit_task

    x, *_ = _blobs(np.random.default_rng(3), 300)
    np.savetxt(tmp_path / "points.csv", x, delimiter=",", header="a,b", comments="")
    m = fit_task(compose_config("task=gmm", "data=table", f"data.path={tmp_path / 'points.csv'}"), tmp_path)
    assert m["num_train"] == 240 and np.isfinite(m["bic"])


def test_em_on_standardised_columns_saves_the_mixture_in_their_units(tmp_path, caplog):
    """A column 500 times wider changes no cluster, and the held-out log-density falls by exactly log 500
    (the Jacobian); columns in other units are standardised by default, and fitted as they are (with a
    warning) under task.standardize=false."""
    import logging

    from sklearn.metrics import adjusted_rand_score

    from conftest import compose_config
    from vaemix.apps.toolkit import fit_task, restore_fit

    x, *_ = _blobs(np.random.default_rng(3), 300)
    runs, cases = {}, [("plain", 1.0, ["task.standardize=true"]), ("wide", 500.0, [])]
    for name, scale, more in [*cases, ("as-is", 500.0, ["task.standardize=false"])]:
        np.savetxt(tmp_path / f"{name}.csv", x * [1.0, scale], delimiter=",", header="width,mass", comments="")
        cfg = compose_config("task=gmm", "data=table", f"data.path={tmp_path / name}.csv", *more)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="vaemix"):
            runs[name] = fit_task(cfg, tmp_path / name), restore_fit(tmp_path / name, cfg)[0]()
        ranges = "the columns' ranges run from"
        assert (f"task=gmm fits the columns as they are, and {ranges}" in caplog.text) == (name == "as-is")
        assert (
            (f"task=gmm: {ranges}" in caplog.text) == ("EM fits them standardised" in caplog.text) == (name == "wide")
        )
        assert ("('width') to" in caplog.text) == (name != "plain"), caplog.text
    (plain, p), (wide, q) = runs["plain"], runs["wide"]
    assert plain["test_log_likelihood"] - wide["test_log_likelihood"] == pytest.approx(np.log(500.0), abs=1e-6)
    assert wide["bic"] - plain["bic"] == pytest.approx(2 * 240 * np.log(500.0), rel=1e-9)
    # the same optimum (its restarts tie, so the components may come in another order)
    means = [np.sort(d.components_distribution.mean().numpy(), axis=0) for d in (p, q)]
    np.testing.assert_allclose(means[1], means[0] * [1, 500], rtol=1e-6)
    rows = x * [1.0, 500.0]
    assert adjusted_rand_score(most_probable_component(p, x), most_probable_component(q, rows)) == 1.0


def test_standardised_em_floors_the_variances_in_the_columns_own_units(tmp_path):
    """A column constant within each cluster keeps only the variance floor, and standardised EM keeps it in
    the column's units (1e-6), not in standard deviations (1e-6 times its variance, 25, in its units); so
    the standardised fit is the as-is fit, to the held-out log-likelihood."""
    from conftest import compose_config
    from vaemix.apps.toolkit import fit_task, restore_fit

    rng = np.random.default_rng(0)
    side = np.repeat([0.0, 1.0], 200)  # [N]
    x = np.stack([rng.normal(10 * side, 1.0), rng.normal(10 * side, 1.0) * 1000, 10 * side], axis=1)  # [N, 3]
    np.savez(tmp_path / "rows.npz", x=x[rng.permutation(len(x))])
    fits, metrics = {}, {}
    for name in ("true", "false"):
        cfg = compose_config(
            "task=gmm",
            "data=table",
            f"data.path={tmp_path / 'rows.npz'}",
            "task.components=2",
            f"task.standardize={name}",
        )
        metrics[name] = fit_task(cfg, tmp_path / name)
        fits[name] = restore_fit(tmp_path / name, cfg)[0]().components_distribution.covariance().numpy()
    assert np.all(fits["true"][:, 2, 2] < 2e-6), fits["true"][:, 2, 2]  # 1.15e-6: EM adds 1.2e-6 to each count
    order = np.argsort(fits["true"][:, 0, 0]), np.argsort(fits["false"][:, 0, 0])
    np.testing.assert_allclose(fits["true"][order[0]], fits["false"][order[1]], rtol=1e-6, atol=1e-9)
    assert metrics["true"]["test_log_likelihood"] == pytest.approx(metrics["false"]["test_log_likelihood"], abs=1e-6)


def test_wine_is_clustered_standardised_and_pixels_as_they_are(tmp_path, caplog):
    """Wine's 13 measurements (their ranges 75-fold apart) cluster by default as they do standardised;
    fitted as they are, the widest decides. Digits' pixels share one unit and are fitted as they are."""
    import logging

    from sklearn.datasets import load_digits, load_wine

    from conftest import compose_config
    from vaemix.apps.toolkit import fit_task

    x, y = load_wine(return_X_y=True)
    np.savez(tmp_path / "wine.npz", x=x, y=y)
    acc = {}
    for name, more in (("by default", []), ("as they are", ["task.standardize=false"])):
        cfg = compose_config("task=gmm", "data=table", f"data.path={tmp_path / 'wine.npz'}", *more)
        acc[name] = fit_task(cfg, tmp_path / name.replace(" ", "-"))["cluster_acc"]
    assert acc["by default"] >= 0.95 and acc["as they are"] < 0.8, acc  # 1.000 and 0.639 on seed 0
    digits = load_digits().data[:300]
    np.savez(tmp_path / "digits.npz", x=digits)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vaemix"):
        cfg = compose_config("task=gmm", "data=table", f"data.path={tmp_path / 'digits.npz'}", "task.covariance=diag")
        fit_task(cfg, tmp_path / "digits")
    assert "ranges run from" not in caplog.text, caplog.text
