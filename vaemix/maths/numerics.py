"""Numerical floors shared by the maths: one place, so a change reaches every use."""

DIAG_SHIFT = 1e-5  # added to every softplus Cholesky diagonal, so no scale reaches 0
COVARIANCE_FLOOR = 1e-2  # added to covariances fitted to latent means (see prior_init)
MIN_PIXEL_SCALE = 1e-3  # floor on a Gaussian pixel std: constant background pixels would drive it to 0
MIN_FEATURE_SCALE = 1e-2  # floor on a per-feature Gaussian std, in standard deviations of the feature
