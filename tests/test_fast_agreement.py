"""vdm_fast (float32, jit-compiled) agrees with vdm_ref (NumPy float64): every public maths
function, whole sampler runs of each kind fed the same noise, guidance gradients, and the
compiled samplers do not recompile when γ, δ, w, w_r, weights or observations change.

Tolerances. Float32 has unit roundoff u = 2⁻²⁴ ≈ 6e-8 (EPS32 = 2u). A function of a few
operations is within a few EPS32 of the exact value *relative to the largest term it adds*
(cancellation makes the error relative to the terms, not to the result), so each maths test
bounds |fast − ref| ≤ k · EPS32 · scale, with `scale` the magnitude of the terms and k small
(8 unless a comment says why). Where λ is an input, rounding λ to float32 moves it by ≤ u|λ|,
which moves α, σ, e^λ by a relative u|λ|: such scales carry a factor (1 + |λ|).
Whole sampler runs add the rounding of every step: the bound is a stated multiple of EPS32 times
the number of network evaluations times the size of the state (see SAMPLER_TOL).
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import vdm_fast.conditioning as FC
import vdm_fast.diffusion as FD
import vdm_fast.guidance as FG
import vdm_fast.losses as FL
import vdm_fast.parameterization as FP
import vdm_fast.samplers as FS
import vdm_fast.schedule as FSch
from vdm_ref import conditioning as RC
from vdm_ref import diffusion as RD
from vdm_ref import guidance as RG
from vdm_ref import losses as RL
from vdm_ref import metrics as RMe
from vdm_ref import oracle
from vdm_ref import parameterization as RP
from vdm_ref import samplers as RS
from vdm_ref import schedule as RSch
from vdm_ref._array import namespace

EPS32 = float(np.finfo(np.float32).eps)
B = 3
SHAPE = (B, 4, 4, 4, 1)  # [B, T, H, W, C]: one shape, so each jitted function compiles once

seeds = st.integers(0, 2**32 - 1)
lam = st.floats(-20.0, 20.0)
lams = st.lists(lam, min_size=B, max_size=B).map(np.array)

COVERED = set()  # every public maths function must be listed by a test below


def covers(*names):
    COVERED.update(names)
    return lambda f: f


def check(got, want, bound, what):
    """|got − want| ≤ bound elementwise; got is float32 from vdm_fast, want float64 from vdm_ref."""
    assert np.asarray(got).dtype == np.float32, f"{what}: vdm_fast returned {np.asarray(got).dtype}"
    err = np.abs(np.asarray(got, dtype=np.float64) - np.asarray(want))
    bound = np.broadcast_to(bound, err.shape)
    worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.ndim else ()
    assert np.all(err <= bound), f"{what}: error {err[worst]:.3g} > bound {bound[worst]:.3g} at {worst}"


def f32(*arrays):
    """The float32 rounding of the inputs (fed to both sides, so only the computation differs)."""
    return tuple(np.asarray(a, dtype=np.float32).astype(np.float64) for a in arrays)


def col(v):
    return np.reshape(v, (-1,) + (1,) * (len(SHAPE) - 1))


def videos(seed, n=2):
    rng = np.random.default_rng(seed)
    return f32(*(rng.standard_normal(SHAPE) for _ in range(n)))


# --- schedule ---------------------------------------------------------------------------------------


@covers("logsnr_schedule_cosine", "t_from_logsnr_cosine")
@given(st.lists(st.floats(0.0, 1.0), min_size=5, max_size=5).map(np.array))
def test_cosine_schedule_and_inverse_agree(t):
    (t,) = f32(t)
    want = RSch.logsnr_schedule_cosine(t)
    # λ = −2 log tan θ, θ = a t + b: rounding θ by u θ moves λ by 2 u θ / (sin θ cos θ), which
    # is ≈ 2uθ e^{|λ|/2}·2 near the ends (the contract's λ(1) ≈ −20.001 in float32).
    a, b = RSch._cosine_ab(RSch.LOGSNR_MIN, RSch.LOGSNR_MAX)
    theta = a * t + b
    check(FSch.logsnr_schedule_cosine(t), want,
          8 * EPS32 * (theta / (np.sin(theta) * np.cos(theta)) + np.abs(want)), "logsnr_schedule_cosine")
    (lam_,) = f32(want)
    # t(λ) = (atan(e^{−λ/2}) − b)/a: rounding e^{−λ/2} by a relative u|λ| moves atan by at most
    # u|λ|/2 (d atan(y)/d log y = y/(1+y²) ≤ ½), then divided by a ≈ π/2.
    check(FSch.t_from_logsnr_cosine(lam_), RSch.t_from_logsnr_cosine(lam_),
          8 * EPS32 * (1 + np.abs(lam_)) / a, "t_from_logsnr_cosine")


@covers("alpha_sigma", "alpha_squared", "sigma_squared")
@given(lams)
def test_alpha_sigma_agree(logsnr):
    (logsnr,) = f32(logsnr)
    # exp(½ log sigmoid(±λ)): log sigmoid(±λ) ≈ −|λ| is accurate to u|λ| absolute, so α, σ are
    # accurate to a relative u|λ|.
    rel = 8 * EPS32 * (1 + np.abs(logsnr))
    for got, want in zip(FSch.alpha_sigma(logsnr), RSch.alpha_sigma(logsnr)):
        check(got, want, rel * want, "alpha_sigma")
    check(FSch.alpha_squared(logsnr), RSch.alpha_squared(logsnr), rel * RSch.alpha_squared(logsnr), "alpha²")
    check(FSch.sigma_squared(logsnr), RSch.sigma_squared(logsnr), rel * RSch.sigma_squared(logsnr), "sigma²")


@covers("logsnr_grid")
@given(st.integers(1, 300))
def test_logsnr_grid_is_the_reference_grid_rounded_once(steps):
    want = RSch.logsnr_grid(steps)
    # Computed in float64 and rounded once: half an ulp, so the endpoints are exactly ±20.
    check(FSch.logsnr_grid(steps), want, 0.5 * EPS32 * np.abs(want), "logsnr_grid")
    assert float(FSch.logsnr_grid(steps)[0]) == -20.0 and float(FSch.logsnr_grid(steps)[-1]) == 20.0


# --- forward process, posterior, parameterisations ----------------------------------------------


def _alpha_sigma(logsnr):
    alpha, sigma = RSch.alpha_sigma(logsnr)
    return col(alpha), col(sigma), col(1 + np.abs(logsnr))


@covers("forward_sample")
@given(seeds, lams)
def test_forward_sample_agrees(seed, logsnr):
    x, eps = videos(seed)
    (logsnr,) = f32(logsnr)
    alpha, sigma, amp = _alpha_sigma(logsnr)
    check(FD.forward_sample(x, logsnr, eps), RD.forward_sample(x, logsnr, eps),
          8 * EPS32 * amp * (alpha * np.abs(x) + sigma * np.abs(eps)), "forward_sample")


def _ordered(a, b):
    """λ_s > λ_t per example, at least 0.05 apart (s < t), rounded to float32."""
    lam_s, lam_t = np.maximum(a, b) + 0.05, np.minimum(a, b)
    return f32(lam_s, lam_t)


@covers("transition_mean_var", "posterior_mean_var", "ancestral_variance")
@given(seeds, lams, lams, st.floats(0.0, 1.0))
def test_transition_posterior_and_ancestral_variance_agree(seed, a, b, gamma):
    z, x = videos(seed)
    lam_s, lam_t = _ordered(a, b)
    (gamma,) = f32(gamma)
    # 1 − r = −expm1(λ_t − λ_s): the difference of two rounded λ has an absolute error
    # u(|λ_s| + |λ_t|), a relative one of that over |λ_t − λ_s| (≥ 0.05 here).
    amp = 1 + np.abs(lam_s) + np.abs(lam_t)
    amp_d = amp * (1 + 1 / np.abs(lam_s - lam_t))
    mean, var = FD.transition_mean_var(z, lam_s, lam_t)
    want_mean, want_var = RD.transition_mean_var(z, lam_s, lam_t)
    check(mean, want_mean, 8 * EPS32 * col(amp) * np.abs(want_mean), "transition mean")
    check(var, want_var, 8 * EPS32 * col(amp_d) * want_var, "transition variance")

    mean, var = FD.posterior_mean_var(z, x, lam_s, lam_t)
    want_mean, want_var = RD.posterior_mean_var(z, x, lam_s, lam_t)
    alpha_s, _ = RSch.alpha_sigma(lam_s)
    alpha_t, _ = RSch.alpha_sigma(lam_t)
    r = np.exp(lam_t - lam_s)
    terms = col(r * alpha_s / alpha_t) * np.abs(z) + col((1 - r) * alpha_s) * np.abs(x)
    check(mean, want_mean, 8 * EPS32 * col(amp_d) * terms, "posterior mean")
    check(var, want_var, 8 * EPS32 * col(amp_d) * want_var, "posterior variance")

    want = RD.ancestral_variance(lam_s, lam_t, gamma)
    check(FD.ancestral_variance(lam_s, lam_t, gamma), want, 8 * EPS32 * amp_d * want, "ancestral_variance")


@covers("x_from_eps", "eps_from_x", "v_from_x_eps", "x_from_v", "eps_from_v",
        "x_from_prediction", "eps_from_prediction", "target_from_x_eps")
@given(seeds, lams)
def test_parameterisations_agree(seed, logsnr):
    x, eps = videos(seed)
    (logsnr,) = f32(logsnr)
    alpha, sigma, amp = _alpha_sigma(logsnr)
    z, v = f32(RD.forward_sample(x, logsnr, eps), RP.v_from_x_eps(x, eps, logsnr))
    bound = lambda terms: 8 * EPS32 * amp * terms
    # Divisions by α (or σ) amplify the terms they divide: the scale is the terms over α (σ).
    cases = {
        "x_from_eps": (FP.x_from_eps, RP.x_from_eps, (z, eps), (np.abs(z) + sigma * np.abs(eps)) / alpha),
        "eps_from_x": (FP.eps_from_x, RP.eps_from_x, (z, x), (np.abs(z) + alpha * np.abs(x)) / sigma),
        "v_from_x_eps": (FP.v_from_x_eps, RP.v_from_x_eps, (x, eps), alpha * np.abs(eps) + sigma * np.abs(x)),
        "x_from_v": (FP.x_from_v, RP.x_from_v, (z, v), alpha * np.abs(z) + sigma * np.abs(v)),
        "eps_from_v": (FP.eps_from_v, RP.eps_from_v, (z, v), sigma * np.abs(z) + alpha * np.abs(v)),
    }
    for name, (fast, ref, args, terms) in cases.items():
        check(fast(*args, logsnr), ref(*args, logsnr), bound(terms), name)
    preds = {"eps": eps, "v": v, "x": x}
    x_terms = {"eps": cases["x_from_eps"][3], "v": cases["x_from_v"][3], "x": np.abs(x)}
    eps_terms = {"eps": np.abs(eps), "v": cases["eps_from_v"][3], "x": cases["eps_from_x"][3]}
    for target, pred in preds.items():
        check(FP.x_from_prediction(z, pred, logsnr, target), RP.x_from_prediction(z, pred, logsnr, target),
              bound(x_terms[target]), f"x_from_prediction {target}")
        check(FP.eps_from_prediction(z, pred, logsnr, target), RP.eps_from_prediction(z, pred, logsnr, target),
              bound(eps_terms[target]), f"eps_from_prediction {target}")
        check(FP.target_from_x_eps(x, eps, logsnr, target), RP.target_from_x_eps(x, eps, logsnr, target),
              bound(cases["v_from_x_eps"][3] if target == "v" else np.abs(pred)), f"target_from_x_eps {target}")


def test_bad_target_is_the_reference_error():
    with pytest.raises(ValueError, match="'eps', 'v', 'x'"):
        FP.x_from_prediction(np.zeros(SHAPE), np.zeros(SHAPE), np.zeros(B), "score")


# --- loss -------------------------------------------------------------------------------------------


def _predict(z, logsnr):
    """A smooth nonlinear stand-in for a network, generic over the array namespace."""
    xp = namespace(z)
    return xp.tanh(0.7 * z + 0.1 * xp.reshape(logsnr, (-1, 1, 1, 1, 1)))


def _weight(logsnr):
    """An extra per-λ weight of Eq. 2 (module-level: a new lambda per call would recompile)."""
    xp = namespace(logsnr)
    return 1 + xp.exp(-xp.abs(logsnr))


@covers("min_snr_weight", "loss_weight_fn")
@given(st.lists(st.floats(-20.0, 20.0), min_size=B, max_size=B).map(np.array), st.sampled_from(["eps", "v"]),
       st.sampled_from([1.0, 5.0]))
def test_min_snr_weight_agrees(logsnr, target, gamma):
    (lam,) = f32(logsnr)
    want = RL.min_snr_weight(lam, gamma, target)
    # exp(±λ) in float32 is accurate to a few u relative; a capped value is exact or a ratio of two.
    check(FL.min_snr_weight(lam, gamma, target), want, 8 * EPS32 * want, f"min_snr_weight {target}")
    check(FL.loss_weight_fn("min_snr", gamma, target)(lam), want, 8 * EPS32 * want, "loss_weight_fn")
    assert FL.loss_weight_fn("none") is None and RL.loss_weight_fn("none") is None


@covers("per_example_mse", "diffusion_loss")
@given(seeds, st.lists(st.floats(0.0, 1.0), min_size=B, max_size=B).map(np.array),
       st.sampled_from(["eps", "v"]))
def test_loss_agrees(seed, t, target):
    x, eps = videos(seed)
    (t,) = f32(t)
    want = RL.per_example_mse(x, eps)
    # A mean of squares: every term positive, so relative error a few u (plus the summation).
    check(FL.per_example_mse(x, eps), want, 8 * EPS32 * want, "per_example_mse")
    want = RL.diffusion_loss(_predict, x, t, eps, target=target, weight_fn=_weight)
    got = FL.diffusion_loss(_predict, x, t, eps, target=target, weight_fn=_weight)
    # The loss is a mean of (f(z_t) − y)² with |f|, |y| ≤ 1 + |x| + |ε|: each residual is accurate
    # to k u (1 + |λ(t)|)(|x| + |ε| + 1); squared terms of size ≤ (|x|+|ε|+1)², so the loss is
    # accurate to 2 · that · mean(|x|+|ε|+1). λ(t) itself carries the schedule's rounding.
    logsnr = RSch.logsnr_schedule_cosine(t)
    size = np.mean(np.reshape(np.abs(x) + np.abs(eps) + 1, (B, -1)), axis=1)
    check(got, want, 64 * EPS32 * (1 + np.abs(logsnr)) * size**2, f"diffusion_loss {target}")


# --- guidance maths ---------------------------------------------------------------------------------


@covers("classifier_free_guidance")
@given(seeds, st.floats(0.0, 10.0))
def test_classifier_free_guidance_agrees(seed, w):
    a, b = videos(seed)
    (w,) = f32(w)
    check(FG.classifier_free_guidance(a, b, w), RG.classifier_free_guidance(a, b, w),
          8 * EPS32 * ((1 + w) * np.abs(a) + w * np.abs(b)), "classifier_free_guidance")


@covers("downsample_area", "downsample_area_transpose")
@given(seeds)
def test_downsampling_agrees(seed):
    x, _ = videos(seed)
    low = f32(RG.downsample_area(x, 2))[0]
    # Means of 4 values: relative to the mean of their magnitudes; the transpose is exact (÷ 4).
    check(FG.downsample_area(x, 2), RG.downsample_area(x, 2), 8 * EPS32 * RG.downsample_area(np.abs(x), 2), "D")
    check(FG.downsample_area_transpose(low, 2), RG.downsample_area_transpose(low, 2), 0.0, "Dᵀ")
    with pytest.raises(ValueError, match="not divisible"):
        FG.downsample_area(np.zeros((1, 1, 6, 6, 1)), 4)


def _observations(seed, kinds=("temporal", "spatial", "both")):
    rng = np.random.default_rng(seed)
    x_a, = f32(rng.standard_normal(SHAPE))
    low, = f32(rng.standard_normal((B, 4, 2, 2, 1)))
    mask = RC.frame_mask(4, [0, 1])
    out = {}
    for kind in kinds:
        kw = {}
        if kind in ("temporal", "both"):
            kw.update(x=x_a, mask=mask)
        if kind in ("spatial", "both"):
            kw.update(low_res=low, low_res_mask=np.ones((1, 4, 1, 1, 1)), factor=2)
        out[kind] = RC.Observation(**kw)
    return out


@covers("reconstruction_loss", "reconstruction_loss_cotangent", "reconstruction_guided_x")
@given(seeds, st.floats(0.0, 50.0), lams)
def test_reconstruction_guidance_maths_agrees(seed, w_r, logsnr):
    x_hat, grad = videos(seed)
    (w_r, logsnr) = f32(w_r, logsnr)
    for kind, obs in _observations(seed + 1).items():
        want = RG.reconstruction_loss(x_hat, obs)
        # Sums of squares of residuals |x_a − x̂| ≤ |x_a| + |x̂|: relative to Σ (|x_a| + |x̂|)².
        size = np.sum(np.reshape((np.abs(x_hat) + 3) ** 2, (B, -1)), axis=1)
        check(FG.reconstruction_loss(x_hat, obs), want, 16 * EPS32 * size, f"reconstruction_loss {kind}")
        check(FG.reconstruction_loss(x_hat, FC.as_observation(obs)), want, 16 * EPS32 * size, "fast Observation")
        want = RG.reconstruction_loss_cotangent(x_hat, obs)
        check(FG.reconstruction_loss_cotangent(x_hat, obs), want, 16 * EPS32 * (np.abs(x_hat) + 3),
              f"cotangent {kind}")
    mask = RC.frame_mask(4, [0])
    alpha, _, amp = _alpha_sigma(logsnr)
    want = RG.reconstruction_guided_x(x_hat, grad, logsnr, w_r, 1 - mask)
    check(FG.reconstruction_guided_x(x_hat, grad, logsnr, w_r, 1 - mask), want,
          8 * EPS32 * amp * (np.abs(x_hat) + w_r * alpha * np.abs(grad)), "reconstruction_guided_x")


# --- conditioning maths -----------------------------------------------------------------------------


@covers("replace_marginal", "replace_posterior", "frame_mask", "prefix_frames", "every_kth_frame",
        "Observation")
@given(seeds, lams, lams)
def test_replacement_agrees(seed, a, b):
    z_s, z_t = videos(seed)
    x_a, eps = videos(seed + 1)
    lam_s, lam_t = _ordered(a, b)
    mask = RC.frame_mask(4, RC.prefix_frames(4, 2))
    np.testing.assert_array_equal(FC.frame_mask(4, FC.every_kth_frame(4, 2)), RC.frame_mask(4, [0, 2]))
    alpha_s, sigma_s, amp = _alpha_sigma(lam_s)
    check(FC.replace_marginal(z_s, x_a, mask, lam_s, eps), RC.replace_marginal(z_s, x_a, mask, lam_s, eps),
          8 * EPS32 * amp * (alpha_s * np.abs(x_a) + sigma_s * np.abs(eps) + np.abs(z_s)), "replace_marginal")
    alpha_t, _ = RSch.alpha_sigma(lam_t)
    r = np.exp(lam_t - lam_s)
    amp_d = col((1 + np.abs(lam_s) + np.abs(lam_t)) * (1 + 1 / np.abs(lam_s - lam_t)))
    terms = col(r * alpha_s[:, 0, 0, 0, 0] / alpha_t) * np.abs(z_t) + alpha_s * np.abs(x_a) + sigma_s * np.abs(eps)
    check(FC.replace_posterior(z_s, z_t, x_a, mask, lam_s, lam_t, eps),
          RC.replace_posterior(z_s, z_t, x_a, mask, lam_s, lam_t, eps),
          8 * EPS32 * amp_d * (terms + np.abs(z_s)), "replace_posterior")


def test_observation_validates_like_the_reference():
    with pytest.raises(ValueError, match="observe something"):
        FC.Observation()
    with pytest.raises(ValueError, match="both x and mask"):
        FC.Observation(x=np.zeros(SHAPE))
    obs = FC.Observation(x=np.zeros(SHAPE), mask=RC.frame_mask(4, [0]))
    assert obs.x.dtype == jnp.float32 and obs.mask.dtype == jnp.float32
    np.testing.assert_array_equal(obs.update_mask(jnp.zeros(SHAPE)), 1 - RC.frame_mask(4, [0]) * np.ones(SHAPE))


# --- sampler steps ----------------------------------------------------------------------------------


@covers("ancestral_step", "langevin_step", "per_step_logsnr")
@given(seeds, lams, lams, st.floats(0.0, 1.0), st.floats(0.01, 1.0))
def test_sampler_steps_agree(seed, a, b, gamma, delta):
    z, x_hat = videos(seed)
    noise, eps_hat = videos(seed + 1)
    lam_s, lam_t = _ordered(a, b)
    gamma, delta = f32(gamma, delta)
    alpha_s, sigma_s, _ = _alpha_sigma(lam_s)
    alpha_t, _ = RSch.alpha_sigma(lam_t)
    r = np.exp(lam_t - lam_s)
    amp_d = col((1 + np.abs(lam_s) + np.abs(lam_t)) * (1 + 1 / np.abs(lam_s - lam_t)))
    std = col(np.sqrt(RD.ancestral_variance(lam_s, lam_t, gamma)))
    terms = col(r * alpha_s[:, 0, 0, 0, 0] / alpha_t) * np.abs(z) + alpha_s * np.abs(x_hat) + std * np.abs(noise)
    check(FS.ancestral_step(z, x_hat, lam_s, lam_t, noise, gamma),
          RS.ancestral_step(z, x_hat, lam_s, lam_t, noise, gamma), 8 * EPS32 * amp_d * terms, "ancestral_step")
    _, _, amp = _alpha_sigma(lam_s)
    check(FS.langevin_step(z, eps_hat, lam_s, noise, delta), RS.langevin_step(z, eps_hat, lam_s, noise, delta),
          8 * EPS32 * amp * (np.abs(z) + sigma_s * (np.abs(eps_hat) + np.abs(noise))), "langevin_step")
    grid = RSch.logsnr_grid(7)
    check(FS.per_step_logsnr(FSch.logsnr_grid(7), 3, z), RS.per_step_logsnr(grid, 3, z),
          0.5 * EPS32 * np.abs(grid[3]), "per_step_logsnr")


# --- metrics ----------------------------------------------------------------------------------------


@covers("sqrtm_psd", "frechet_distance", "gaussian_w2", "feature_statistics", "frechet_distance_from_features",
        "inception_score_split", "inception_score_from_logits")
@given(seeds)
def test_metrics_agree(seed):
    # vdm_fast.metrics re-exports the reference's metric maths (array-API code, right under
    # jax.jit), so comparing the two by name would compare a function with itself. What can fail:
    # (1) the re-export is those very functions; (2) the maths equals independent formulas in
    # float64 (the FID code's scipy.linalg.sqrtm form of the Fréchet distance, a closed form for
    # commuting covariances, numpy.cov, IS from scipy's softmax and rel_entr), to 1e-10 relative to
    # the terms (float64 rounding of a 6x6 eigendecomposition is ~1e-15); (3) under jax.jit on
    # float32 — how the fast backend would run it on device — it matches NumPy float64 within
    # k · EPS32 · scale (k measured ≤ 5, 12, 2.2 for d², C^{1/2}, IS over 200 seeds; bound 4x that).
    import scipy.linalg
    import scipy.special

    import vdm_fast.metrics as FMe  # here: the module also loads the I3D network's code

    names = ("sqrtm_psd", "frechet_distance", "gaussian_w2", "feature_statistics",
             "frechet_distance_from_features", "inception_score_split", "inception_score_from_logits")
    for name in names:
        assert getattr(FMe, name) is getattr(RMe, name), f"vdm_fast.metrics.{name} is not vdm_ref's"

    rng = np.random.default_rng(seed)
    f1, f2 = f32(rng.standard_normal((24, 6)), 0.5 + 1.3 * rng.standard_normal((30, 6)))
    mu1, cov1 = RMe.feature_statistics(f1)
    mu2, cov2 = RMe.feature_statistics(f2)
    np.testing.assert_allclose(mu1, np.mean(f1, axis=0), rtol=0, atol=1e-14)
    np.testing.assert_allclose(cov1, np.cov(f1, rowvar=False), rtol=0, atol=1e-13)
    np.testing.assert_allclose(RMe.sqrtm_psd(cov2), scipy.linalg.sqrtm(cov2).real, rtol=0, atol=1e-10)

    scale = np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2)
    d2 = scale - 2 * np.trace(scipy.linalg.sqrtm(cov1 @ cov2).real)  # the FID code's formula
    assert abs(RMe.frechet_distance(mu1, cov1, mu2, cov2) - d2) <= 1e-10 * scale
    assert abs(RMe.frechet_distance_from_features(f1, f2) - d2) <= 1e-10 * scale
    assert abs(RMe.gaussian_w2(mu1, cov1, mu2, cov2) - np.sqrt(d2)) <= 1e-10 * np.sqrt(scale)
    va, vb = rng.uniform(0.1, 2.0, 6), rng.uniform(0.1, 2.0, 6)  # commuting: W2² = |Δμ|² + Σ(√a − √b)²
    exact = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(va) - np.sqrt(vb)) ** 2)
    assert abs(RMe.frechet_distance(mu1, np.diag(va), mu2, np.diag(vb)) - exact) <= 1e-12 * (1 + exact)

    logits = 3 * np.concatenate([f1, f2[:6]])  # [30, 6]
    log_p = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)

    def inception(rows):
        p = np.exp(log_p[rows])
        return np.exp(np.mean(np.sum(scipy.special.rel_entr(p, np.mean(p, axis=0)[None]), axis=1)))

    assert abs(RMe.inception_score_split(logits) - inception(slice(None))) <= 1e-12 * inception(slice(None))
    parts = np.array([inception(slice(k * 30 // 4, (k + 1) * 30 // 4)) for k in range(4)])
    mean, std = RMe.inception_score_from_logits(logits, 4)
    np.testing.assert_allclose([mean, std], [parts.mean(), parts.std()], rtol=1e-12, atol=1e-14)

    def j32(fn, *args, **jit_options):  # the array arguments as float32, the function under jax.jit
        cast = (jnp.asarray(a, jnp.float32) if isinstance(a, np.ndarray) else a for a in args)
        return np.asarray(jax.jit(fn, **jit_options)(*cast))

    got = j32(RMe.frechet_distance, mu1, cov1, mu2, cov2)
    assert got.dtype == np.float32 and abs(got - d2) <= 20 * EPS32 * scale, (got, d2)
    c_norm, c_min = np.linalg.eigvalsh(cov2)[[-1, 0]]
    err = np.max(np.abs(j32(RMe.sqrtm_psd, cov2) - scipy.linalg.sqrtm(cov2).real))
    assert err <= 48 * EPS32 * c_norm / np.sqrt(c_min), err  # δ√w ≈ δw / (2√w), δw ~ EPS32 ||C||
    is_ref = inception(slice(None))
    amp = 1 + np.max(np.abs(logits))  # log-softmax rounds relative to the largest logit
    assert abs(j32(RMe.inception_score_split, logits) - is_ref) <= 8 * EPS32 * amp * is_ref
    got = j32(RMe.inception_score_from_logits, logits, 4, static_argnums=1)
    assert np.all(np.abs(got - [parts.mean(), parts.std()]) <= 8 * EPS32 * amp * parts.max()), got


# --- whole sampler runs fed the same noise ------------------------------------------------------------

STEPS = 6
O = oracle.GaussianVideoOracle(shape=SHAPE[1:], rho_t=0.8, rho_s=0.6)
D = int(np.prod(SHAPE[1:]))
HIDDEN, COND = 16, 3


def _mlp_x(params, z, logsnr, cond=None):
    """A small nonlinear denoiser, generic over the array namespace: x̂ = tanh-MLP of (α z, λ, c)."""
    xp = namespace(z)
    w1, w2, wc = params
    alpha, _ = RSch.alpha_sigma(logsnr)
    h = xp.reshape(z, (z.shape[0], D)) @ w1 * xp.reshape(alpha, (-1, 1))
    h = h + 0.05 * xp.reshape(logsnr, (-1, 1))
    if cond is not None:
        h = h + cond @ wc
    return xp.reshape(xp.tanh(xp.tanh(h) @ w2), z.shape)


def _mlp_params(seed):
    rng = np.random.default_rng(seed)
    # Weights of size 1/sqrt(fan-in): pre-activations O(1), so tanh stays off its flat tails,
    # where float32's tanh' = 1 − tanh² cancels and any float32 gradient loses its digits.
    return f32(rng.standard_normal((D, HIDDEN)) / np.sqrt(D), 2 * rng.standard_normal((HIDDEN, D)) / np.sqrt(HIDDEN),
               rng.standard_normal((COND, HIDDEN)) / np.sqrt(COND))


class MLPDenoiser(eqx.Module):
    """The same denoiser as a pytree-callable: its weights are traced by the compiled samplers."""

    params: tuple

    def __call__(self, z, logsnr, cond=None):
        return _mlp_x(self.params, z, logsnr, cond)


REF_MLP = functools.partial(_mlp_x, _mlp_params(0))
FAST_MLP = MLPDenoiser(tuple(jnp.asarray(p, dtype=jnp.float32) for p in _mlp_params(0)))


def _mlp_vjp(params, z, logsnr):
    """The reference's denoise_vjp for the MLP, by hand in NumPy float64: (x̂, g ↦ Jᵀ g)."""
    w1, w2, _ = params
    alpha = np.reshape(RSch.alpha_sigma(logsnr)[0], (-1, 1))
    hidden = np.tanh(np.reshape(z, (z.shape[0], D)) @ w1 * alpha + 0.05 * np.reshape(logsnr, (-1, 1)))
    out = np.tanh(hidden @ w2)

    def vjp(g):
        g_hidden = (np.reshape(g, out.shape) * (1 - out**2)) @ w2.T * (1 - hidden**2)
        return np.reshape(g_hidden @ w1.T * alpha, z.shape)

    return np.reshape(out, z.shape), vjp


REF_MLP_VJP = functools.partial(_mlp_vjp, _mlp_params(0))


def _draws(seed, n_replace=False):
    rng = np.random.default_rng(seed)
    out = f32(rng.standard_normal(SHAPE), rng.standard_normal((STEPS - 1,) + SHAPE),
              rng.standard_normal((STEPS - 1,) + SHAPE), rng.standard_normal((STEPS,) + SHAPE))
    return out


GRID = RSch.logsnr_grid(STEPS)

# A whole run is a recursion of ≤ 2·STEPS network evaluations (PC) on a state of size ≈ 3 (z ~
# N(0, I), |x̂| ≤ 3). Each evaluation and update adds a few u of the state; the posterior mean and
# the denoisers are contractions (gains ≤ 1), so without guidance the error is ≲ 8 · EPS32 ·
# evaluations · 3. Reconstruction guidance multiplies the float32 gradient's rounding by w_r α/2
# in x̃, and the guided dynamics feed that back through the next steps' gradients with another
# factor of up to w_r: hence (1 + w_r)². Measured worst cases over seeds are 20-60× below this
# bound (6e-7 at w_r = 0, 2e-4 at w_r = 10 with the MLP), while any wrong term moves samples by
# O(0.01-1).
def sampler_tol(w_r=0.0):
    return 8 * EPS32 * (2 * STEPS) * 3 * (1 + w_r) ** 2


@pytest.mark.parametrize("denoiser", ["oracle", "mlp"])
@given(seed=seeds, gamma=st.floats(0.0, 1.0), delta=st.floats(0.01, 0.5))
def test_ancestral_and_pc_runs_agree_with_the_same_noise(denoiser, seed, gamma, delta):
    ref_fn, fast_fn = (O.denoise, O.denoise) if denoiser == "oracle" else (REF_MLP, FAST_MLP)
    z, noise, corrector, _ = _draws(seed)
    gamma, delta = float(np.float32(gamma)), float(np.float32(delta))
    check(FS.sample_ancestral(fast_fn, z, GRID, noise, gamma=gamma),
          RS.sample_ancestral(ref_fn, z, GRID, noise, gamma=gamma), sampler_tol(), "ancestral")
    check(FS.sample_pc(fast_fn, z, GRID, noise, corrector, gamma=gamma, delta=delta),
          RS.sample_pc(ref_fn, z, GRID, noise, corrector, gamma=gamma, delta=delta), sampler_tol(), "pc")


@given(seed=seeds, w=st.floats(0.0, 5.0))
def test_classifier_free_guided_run_agrees(seed, w):
    z, noise, _, _ = _draws(seed)
    rng = np.random.default_rng(seed)
    cond, = f32(rng.standard_normal((B, COND)))
    null = np.zeros((B, COND))
    w = float(np.float32(w))
    want = RS.sample_ancestral(RG.classifier_free_denoiser(REF_MLP, cond, null, w), z, GRID, noise, gamma=0.3)
    # Batched [c; c_null] in one evaluation, and two evaluations (null_cond a scalar-like None).
    fused = FG.classifier_free_denoiser(FAST_MLP, cond, null, w)
    check(FS.sample_ancestral(fused, z, GRID, noise, gamma=0.3), want, sampler_tol(w), "CFG (one batched call)")
    want = RS.sample_ancestral(RG.classifier_free_denoiser(REF_MLP, cond, None, w), z, GRID, noise, gamma=0.3)
    split = FG.classifier_free_denoiser(FAST_MLP, cond, None, w)
    check(FS.sample_ancestral(split, z, GRID, noise, gamma=0.3), want, sampler_tol(w), "CFG (two calls)")


CONDITIONAL_CASES = [(kind, replacement, pc) for kind in ("temporal", "spatial", "both")
                     for replacement in ("marginal", "posterior") for pc in (False, True)
                     if not (kind == "spatial" and replacement == "posterior")]  # no zᵃ to replace


@pytest.mark.parametrize("kind,replacement,pc", CONDITIONAL_CASES)
@given(seed=seeds, w_r=st.floats(0.0, 10.0), gamma=st.floats(0.0, 1.0))
def test_conditional_runs_agree_with_the_same_noise(kind, replacement, pc, seed, w_r, gamma):
    z, noise, corrector, replace = _draws(seed)
    obs = _observations(seed + 7, (kind,))[kind]
    w_r, gamma = float(np.float32(w_r)), float(np.float32(gamma))
    kw = {"w_r": w_r, "replacement": replacement, "gamma": gamma, "corrector_noise": corrector if pc else None}
    want = RC.sample_conditional(O.denoise_vjp, z, GRID, noise, replace, obs, **kw)
    # The fast sampler takes the plain denoiser and builds the vjp by jax.vjp in float32.
    check(FC.sample_conditional(O.denoise, z, GRID, noise, replace, obs, **kw), want, sampler_tol(w_r),
          f"conditional {kind} {replacement} pc={pc} (oracle)")
    if replacement == "marginal":
        want = RC.sample_conditional(REF_MLP_VJP, z, GRID, noise, replace, obs, **kw)
        check(FC.sample_conditional(FAST_MLP, z, GRID, noise, replace, obs, **kw), want, sampler_tol(w_r),
              f"conditional {kind} pc={pc} (MLP)")


@given(seed=seeds)
def test_keys_draw_exactly_what_noise_from_key_materialises(seed):
    z, _, _, _ = _draws(seed)
    k_noise, k_corr, k_repl = jax.random.split(jax.random.key(seed), 3)
    noise = FS.noise_from_key(k_noise, STEPS - 1, SHAPE)
    corr = FS.noise_from_key(k_corr, STEPS - 1, SHAPE)
    repl = FS.noise_from_key(jax.random.key_data(k_repl), STEPS, SHAPE)  # a raw key works too
    assert noise.dtype == jnp.float32 and noise.shape == (STEPS - 1,) + SHAPE
    # Same draws, same compiled arithmetic: the key run equals the array run to float32 rounding.
    got = FS.sample_pc(FAST_MLP, z, GRID, k_noise, k_corr, gamma=0.2)
    np.testing.assert_allclose(got, FS.sample_pc(FAST_MLP, z, GRID, noise, corr, gamma=0.2), rtol=0, atol=1e-6)
    check(got, RS.sample_pc(REF_MLP, z, GRID, np.asarray(noise, np.float64), np.asarray(corr, np.float64),
                            gamma=0.2), sampler_tol(), "pc from keys vs reference")
    obs = _observations(seed, ("both",))["both"]
    got = FC.sample_conditional(FAST_MLP, z, GRID, k_noise, jax.random.key_data(k_repl), obs, w_r=3.0,
                                corrector_noise=k_corr)
    want = RC.sample_conditional(REF_MLP_VJP, z, GRID, *(np.asarray(a, np.float64) for a in (noise, repl)), obs,
                                 w_r=3.0, corrector_noise=np.asarray(corr, np.float64))
    check(got, want, sampler_tol(3.0), "conditional from keys vs reference")


# --- guidance gradient --------------------------------------------------------------------------------


@eqx.filter_jit
def _apply(denoiser, z, logsnr):
    return denoiser(z, logsnr)


@given(seeds, lams, st.floats(0.5, 20.0))
def test_reconstruction_guidance_gradient_agrees(seed, logsnr, w_r):
    z, _ = videos(seed)
    (logsnr, w_r) = f32(logsnr, w_r)
    for kind, obs in _observations(seed + 3).items():
        # The guided x̃ = x̂ − (w_r α/2) m_b ⊙ Jᵀ g with g the cotangent: fast builds Jᵀ g by jax.vjp
        # of the float32 network; the reference by the oracle's exact float64 Jacobian (symmetric
        # U diag(gain) Uᵀ) and by jax.vjp in float64 for the MLP.
        for ref_vjp, fast_fn, what in ((O.denoise_vjp, O.denoise, "oracle"), (REF_MLP_VJP, FAST_MLP, "MLP")):
            want = RG.reconstruction_guided_denoiser(ref_vjp, obs, w_r)(z, logsnr)
            guided = FG.reconstruction_guided_denoiser(fast_fn, obs, w_r)
            got = _apply(guided, z, logsnr)
            # |Jᵀ g| ≤ |g| · (rows of J summed) ≤ (|x̂| + 3)·D·max|J|; a few u of that, times w_r α/2.
            alpha, _ = RSch.alpha_sigma(logsnr)
            scale = 4 + w_r * col(alpha) * 2 * (3 + 1) * np.sqrt(D)
            check(got, want, 64 * EPS32 * scale, f"guided x̃ {kind} {what}")
    # w_r = 0 skips the backward pass and returns the plain model exactly.
    guided = FG.reconstruction_guided_denoiser(FAST_MLP, obs, 0.0)
    np.testing.assert_array_equal(guided(jnp.asarray(z, jnp.float32), jnp.asarray(logsnr, jnp.float32)),
                                  FAST_MLP(jnp.asarray(z, jnp.float32), jnp.asarray(logsnr, jnp.float32)))


def test_jax_vjp_of_a_denoise_vjp_is_a_clear_error():
    guided = FG.reconstruction_guided_denoiser(O.denoise_vjp, _observations(0, ("temporal",))["temporal"], 1.0)
    with pytest.raises(TypeError, match="DenoiseVJP"):
        guided(jnp.zeros(SHAPE, jnp.float32), jnp.zeros(B, jnp.float32))
    # Wrapped, the oracle's exact vjp is used as given.
    wrapped = FG.reconstruction_guided_denoiser(FG.DenoiseVJP(O.denoise_vjp), _observations(0, ("temporal",))["temporal"], 1.0)
    plain = FG.reconstruction_guided_denoiser(O.denoise, _observations(0, ("temporal",))["temporal"], 1.0)
    z, l = jnp.ones(SHAPE, jnp.float32), jnp.full((B,), 0.5, jnp.float32)
    np.testing.assert_allclose(wrapped(z, l), plain(z, l), atol=1e-5)


# --- compiled once per configuration --------------------------------------------------------------

TRACES = {"n": 0}


class CountingDenoiser(eqx.Module):
    """A pytree denoiser that counts how often it is traced (each trace is a compilation)."""

    scale: jax.Array

    def __call__(self, z, logsnr, cond=None):
        TRACES["n"] += 1
        x = jnp.tanh(self.scale * z)
        return x if cond is None else x + jnp.reshape(cond[:, :1], (-1, 1, 1, 1, 1))


def _traces(fn):
    before = TRACES["n"]
    jax.block_until_ready(fn())
    return TRACES["n"] - before


def test_changing_weights_gamma_delta_w_and_w_r_does_not_recompile():
    z, noise, corrector, replace = _draws(0)
    model = lambda s: CountingDenoiser(jnp.asarray(s, dtype=jnp.float32))
    cond, null = np.ones((B, COND)), np.zeros((B, COND))
    obs = lambda seed: _observations(seed, ("both",))["both"]
    key = jax.random.key(0)
    runs = {
        "ancestral": lambda s, v: FS.sample_ancestral(model(s), z, GRID, noise, gamma=v),
        "ancestral (key)": lambda s, v: FS.sample_ancestral(model(s), z, GRID, key, gamma=v),
        "pc": lambda s, v: FS.sample_pc(model(s), z, GRID, noise, corrector, gamma=v, delta=v / 3),
        "cfg": lambda s, v: FS.sample_ancestral(FG.classifier_free_denoiser(model(s), cond, null, 4 * v), z, GRID,
                                                noise, gamma=v),
        "conditional": lambda s, v: FC.sample_conditional(model(s), z, GRID, noise, replace, obs(int(10 * v)),
                                                          w_r=10 * v, gamma=v, corrector_noise=corrector,
                                                          delta=v / 3),
        "progress": lambda s, v: FS.sample_ancestral(model(s), z, GRID, noise, gamma=v,
                                                     progress=lambda done, total: None),
    }
    for name, run in runs.items():
        assert _traces(functools.partial(run, 0.5, 0.1)) >= 1, name  # first call compiles
        assert _traces(functools.partial(run, 0.7, 0.3)) == 0, f"{name}: a new value recompiled"
        assert _traces(functools.partial(run, 0.9, 0.0)) == 0, f"{name}: a new value recompiled"
    # The grid's values are traced too: a different λ range with the same number of steps.
    FS.sample_ancestral(model(0.5), z, GRID, noise)
    assert _traces(lambda: FS.sample_ancestral(model(0.5), z, RSch.logsnr_grid(STEPS, -15.0, 15.0), noise)) == 0


def test_the_network_is_traced_once_per_sampler():
    z, _, _, _ = _draws(1)
    m = CountingDenoiser(jnp.asarray(1.5, dtype=jnp.float32))
    grid = RSch.logsnr_grid(STEPS + 1)  # a new shape: a new compilation, counted
    assert _traces(lambda: FS.sample_pc(m, z[:2], grid, jax.random.key(1), jax.random.key(2))) == 1


def test_progress_reports_every_k_evaluations():
    seen = []
    z, noise, corrector, _ = _draws(2)
    FS.sample_pc(FAST_MLP, z, GRID, noise, corrector, progress=lambda d, t: seen.append((d, t)), progress_every=4)
    evals = 2 * (STEPS - 1) + 1
    assert seen == [(d, evals) for d in range(4, evals, 4)] + [(evals, evals)]
    with pytest.raises(ValueError, match="progress_every"):
        FS.sample_ancestral(FAST_MLP, z, GRID, noise, progress=print, progress_every=0)


def test_bad_noise_and_observation_shapes_are_clear_errors():
    z, noise, _, replace = _draws(3)
    with pytest.raises(ValueError, match=r"noise must be a jax.random key or an array of shape"):
        FS.sample_ancestral(FAST_MLP, z, GRID, noise[:, :2])
    with pytest.raises(ValueError, match="single jax.random key"):
        FS.sample_ancestral(FAST_MLP, z, GRID, jax.random.split(jax.random.key(0), 2))
    with pytest.raises(ValueError, match="replacement must be one of"):
        FC.sample_conditional(FAST_MLP, z, GRID, noise, replace, _observations(0, ("temporal",))["temporal"],
                              replacement="exact")
    bad = RC.Observation(low_res=np.zeros((B, 4, 3, 3, 1)), low_res_mask=np.ones((1, 4, 1, 1, 1)), factor=2)
    with pytest.raises(ValueError, match="low_res of shape"):
        FC.sample_conditional(FAST_MLP, z, GRID, noise, replace, bad)


# --- every public maths function is covered -------------------------------------------------------

MATHS_MODULES = (RSch, RD, RP, RL, RG, RC, RS, RMe)
SAMPLERS_AND_BUILDERS = {
    # Checked above by whole runs, gradients or their own tests rather than by value tables.
    "reverse_process", "sample_ancestral", "sample_pc", "sample_conditional",
    "classifier_free_denoiser", "reconstruction_guided_denoiser", "with_jax_vjp",
}


def test_every_public_maths_function_is_covered():
    import inspect

    public = {name for m in MATHS_MODULES for name, obj in vars(m).items()
              if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
              and obj.__module__ == m.__name__}
    missing = public - COVERED - SAMPLERS_AND_BUILDERS
    assert not missing, f"no agreement test for {sorted(missing)}"
