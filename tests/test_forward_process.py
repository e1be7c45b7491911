"""Eq. 1 and Eq. 3 against direct Gaussian algebra; the ε/v/x parameterisation round trips."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vdm_ref import diffusion, losses, parameterization as P, schedule

SHAPE = (3, 2, 3, 3, 1)
logsnrs = st.floats(-15.0, 15.0)


def _arrays(seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)


@given(logsnrs, logsnrs, st.integers(0, 10_000))
def test_posterior_matches_bayes_rule_on_q_zs_given_x_and_q_zt_given_zs(a, b, seed):
    lam_s, lam_t = max(a, b) + 0.05, min(a, b)  # s < t  <=>  λ_s > λ_t
    x, z_t = _arrays(seed)
    ls, lt = np.full(3, lam_s), np.full(3, lam_t)
    mean, var = diffusion.posterior_mean_var(z_t, x, ls, lt)
    # Direct algebra: prior q(z_s|x) = N(α_s x, σ_s²); likelihood q(z_t|z_s) = N(α_{t|s} z_s, σ²_{t|s}).
    alpha_s, sigma_s = schedule.alpha_sigma(lam_s)
    alpha_t, sigma_t = schedule.alpha_sigma(lam_t)
    a_ts = alpha_t / alpha_s
    var_ts = sigma_t**2 - a_ts**2 * sigma_s**2  # Var[z_t|z_s] from the two marginals
    precision = 1 / sigma_s**2 + a_ts**2 / var_ts
    direct_mean = (alpha_s * x / sigma_s**2 + a_ts * z_t / var_ts) / precision
    np.testing.assert_allclose(var.ravel(), 1 / precision, rtol=1e-7)
    np.testing.assert_allclose(mean, direct_mean, rtol=1e-6, atol=1e-8)


@given(logsnrs, logsnrs, st.integers(0, 10_000))
def test_transition_variance_matches_the_marginals(a, b, seed):
    lam_s, lam_t = max(a, b) + 0.05, min(a, b)
    z_s, _ = _arrays(seed)
    mean, var = diffusion.transition_mean_var(z_s, np.full(3, lam_s), np.full(3, lam_t))
    alpha_s, sigma_s = schedule.alpha_sigma(lam_s)
    alpha_t, sigma_t = schedule.alpha_sigma(lam_t)
    # σ_t² = α_{t|s}² σ_s² + σ²_{t|s}: composing q(z_s|x) with q(z_t|z_s) gives q(z_t|x).
    np.testing.assert_allclose(var.ravel(), sigma_t**2 - (alpha_t / alpha_s) ** 2 * sigma_s**2, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(mean, alpha_t / alpha_s * z_s, rtol=1e-12)


def test_forward_sample_has_the_stated_moments():
    rng = np.random.default_rng(0)
    x = np.full((200_000, 1), 0.7)
    lam = np.full(200_000, 1.3)
    z = diffusion.forward_sample(x, lam, rng.standard_normal(x.shape))
    alpha, sigma = schedule.alpha_sigma(1.3)
    # 200k draws: the standard error of the mean is σ/447 ≈ 1.4e-3; 5 SE tolerance.
    assert abs(z.mean() - alpha * 0.7) < 5 * sigma / np.sqrt(2e5)
    assert abs(z.std() - sigma) < 5e-3


@given(logsnrs, st.integers(0, 10_000))
def test_parameterisations_round_trip(lam, seed):
    x, eps = _arrays(seed)
    logsnr = np.full(3, lam)
    z = diffusion.forward_sample(x, logsnr, eps)
    v = P.v_from_x_eps(x, eps, logsnr)
    tol = dict(rtol=1e-6, atol=1e-6 * np.exp(abs(lam) / 2))  # 1/α or 1/σ amplifies rounding
    np.testing.assert_allclose(P.x_from_eps(z, eps, logsnr), x, **tol)
    np.testing.assert_allclose(P.eps_from_x(z, x, logsnr), eps, **tol)
    np.testing.assert_allclose(P.x_from_v(z, v, logsnr), x, atol=1e-12)
    np.testing.assert_allclose(P.eps_from_v(z, v, logsnr), eps, atol=1e-12)
    for target, pred in (("eps", eps), ("v", v), ("x", x)):
        np.testing.assert_allclose(P.x_from_prediction(z, pred, logsnr, target), x, **tol)
        np.testing.assert_allclose(P.eps_from_prediction(z, pred, logsnr, target), eps, **tol)


def test_unknown_target_is_a_clear_error():
    x, eps = _arrays(0)
    with pytest.raises(ValueError, match="'eps', 'v', 'x'"):
        P.x_from_prediction(x, eps, np.zeros(3), "score")


def test_loss_is_zero_for_the_true_noise_and_eq2_weighting_holds():
    x, eps = _arrays(1)
    t = np.array([0.1, 0.5, 0.9])
    for target in ("eps", "v"):
        def oracle_predict(z, logsnr):
            return P.target_from_x_eps(x, eps, logsnr, target)
        np.testing.assert_allclose(losses.diffusion_loss(oracle_predict, x, t, eps, target=target), 0.0, atol=1e-20)
    # ε-MSE equals Eq. 2's x-space error weighted by w(λ) = e^λ = α²/σ².
    rng = np.random.default_rng(2)
    wrong = rng.standard_normal(SHAPE)
    l_eps = losses.diffusion_loss(lambda z, l: wrong, x, t, eps, target="eps")
    logsnr = schedule.logsnr_schedule_cosine(t)
    z = diffusion.forward_sample(x, logsnr, eps)
    x_err = losses.per_example_mse(P.x_from_eps(z, wrong, logsnr), x)
    np.testing.assert_allclose(l_eps, np.exp(logsnr) * x_err, rtol=1e-9)
    weighted = losses.diffusion_loss(lambda z, l: wrong, x, t, eps, weight_fn=lambda l: 2.0 + 0 * l)
    np.testing.assert_allclose(weighted, 2 * l_eps, rtol=1e-12)
