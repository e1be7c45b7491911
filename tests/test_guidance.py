"""Eq. 6-8: classifier-free guidance algebra; reconstruction-guidance gradients against finite
differences in float64; the downsampling adjoint."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vdm_ref import conditioning as C
from vdm_ref import guidance as G
from vdm_ref import oracle, parameterization as P

SHAPE = (2, 4, 4, 4, 1)


@given(st.floats(0.0, 10.0), st.integers(0, 1000))
def test_classifier_free_guidance_is_eq6_in_eps_and_in_x(w, seed):
    rng = np.random.default_rng(seed)
    z, xc, xu = (rng.standard_normal(SHAPE) for _ in range(3))
    logsnr = rng.uniform(-5, 5, size=2)
    denoise = lambda z_, l, c: xc if c == "cond" else xu  # noqa: E731
    x_tilde = G.classifier_free_denoiser(denoise, "cond", "null", w)(z, logsnr)
    eps_tilde = G.classifier_free_guidance(P.eps_from_x(z, xc, logsnr), P.eps_from_x(z, xu, logsnr), w)
    np.testing.assert_allclose(P.eps_from_x(z, x_tilde, logsnr), eps_tilde, rtol=1e-9, atol=1e-9)


def test_downsample_transpose_is_the_adjoint():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2, 3, 8, 8, 2)), rng.standard_normal((2, 3, 4, 4, 2))
    lhs = np.sum(G.downsample_area(x, 2) * y)
    rhs = np.sum(x * G.downsample_area_transpose(y, 2))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)
    with pytest.raises(ValueError, match="not divisible"):
        G.downsample_area(np.zeros((1, 1, 6, 6, 1)), 4)


def _nonlinear_denoiser(seed):
    rng = np.random.default_rng(seed)
    d = int(np.prod(SHAPE[1:]))
    w = jnp.asarray(rng.standard_normal((d, d)) / np.sqrt(d))

    def denoise(z, logsnr):
        flat = jnp.reshape(z, (z.shape[0], d))
        scale = jnp.reshape(jax.nn.sigmoid(logsnr), (-1, 1))
        return jnp.reshape(jnp.tanh(scale * flat @ w), z.shape)

    return denoise


def _observations(rng):
    x_a = rng.standard_normal(SHAPE)
    low = rng.standard_normal((2, 4, 2, 2, 1))
    temporal = C.Observation(x=jnp.asarray(x_a), mask=jnp.asarray(C.frame_mask(4, [0, 1])))
    spatial = C.Observation(low_res=jnp.asarray(low), low_res_mask=jnp.ones((1, 4, 1, 1, 1)), factor=2)
    both = C.Observation(x=temporal.x, mask=temporal.mask, low_res=spatial.low_res,
                         low_res_mask=spatial.low_res_mask, factor=2)
    return {"temporal (Eq. 7)": temporal, "spatial (Eq. 8)": spatial, "both (Fig. 2)": both}


@pytest.mark.parametrize("kind", ["temporal (Eq. 7)", "spatial (Eq. 8)", "both (Fig. 2)"])
def test_reconstruction_gradient_matches_finite_differences(kind):
    rng = np.random.default_rng(1)
    obs = _observations(rng)[kind]
    denoise = _nonlinear_denoiser(2)
    z = jnp.asarray(rng.standard_normal(SHAPE))
    logsnr = jnp.asarray([0.3, -1.2])
    x_hat, vjp = G.with_jax_vjp(denoise)(z, logsnr)
    grad = np.asarray(vjp(G.reconstruction_loss_cotangent(x_hat, obs)))

    def total_loss(zz):
        return float(jnp.sum(G.reconstruction_loss(denoise(jnp.asarray(zz), logsnr), obs)))

    # Central differences in float64 along random directions: error O(h²) ≈ 1e-10 relative.
    h = 1e-5
    for _ in range(5):
        u = rng.standard_normal(SHAPE)
        fd = (total_loss(np.asarray(z) + h * u) - total_loss(np.asarray(z) - h * u)) / (2 * h)
        np.testing.assert_allclose(np.sum(grad * u), fd, rtol=1e-6, atol=1e-8)


def test_oracle_vjp_matches_finite_differences():
    o = oracle.GaussianVideoOracle(shape=(4, 4, 4, 1))
    rng = np.random.default_rng(3)
    z, g = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
    logsnr = np.array([2.0, -3.0])
    _, vjp = o.denoise_vjp(z, logsnr)
    u = rng.standard_normal(SHAPE)
    h = 1e-5
    fd = (o.denoise(z + h * u, logsnr) - o.denoise(z - h * u, logsnr)) / (2 * h)  # J u
    np.testing.assert_allclose(np.sum(vjp(g) * u), np.sum(g * fd), rtol=1e-8)


def test_reconstruction_guided_x_is_eq7():
    rng = np.random.default_rng(4)
    x_hat, grad = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
    logsnr = np.array([1.0, -2.0])
    mask = C.frame_mask(4, [0])
    out = G.reconstruction_guided_x(x_hat, grad, logsnr, 3.0, 1 - mask)
    alpha = np.sqrt(1 / (1 + np.exp(-logsnr))).reshape(-1, 1, 1, 1, 1)
    np.testing.assert_allclose(out, x_hat - 1.5 * alpha * (1 - mask) * grad, rtol=1e-12)
    np.testing.assert_allclose(out[:, 0], x_hat[:, 0])  # known frame untouched
