"""The same reference functions run under jax.jit and jax.grad when given jax arrays (float64)."""

import jax
import jax.numpy as jnp
import numpy as np

from vdm_ref import conditioning as C
from vdm_ref import diffusion, guidance, losses, oracle, samplers, schedule

O = oracle.GaussianVideoOracle(shape=(4, 4, 4, 1))
STEPS, B = 8, 3


def test_schedule_and_posterior_under_jit_match_numpy():
    t = np.linspace(0, 1, 11)
    np.testing.assert_allclose(jax.jit(schedule.logsnr_schedule_cosine)(jnp.asarray(t)),
                               schedule.logsnr_schedule_cosine(t), rtol=1e-12, atol=1e-12)
    rng = np.random.default_rng(0)
    z, x = rng.standard_normal((2, B) + O.shape)
    ls, lt = np.array([3.0, 1.0, 0.5]), np.array([1.0, -2.0, 0.0])
    got = jax.jit(diffusion.posterior_mean_var)(*map(jnp.asarray, (z, x, ls, lt)))
    want = diffusion.posterior_mean_var(z, x, ls, lt)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)


def _draws():
    rng = np.random.default_rng(1)
    shape = (B,) + O.shape
    return (rng.standard_normal(shape), rng.standard_normal((STEPS - 1,) + shape),
            rng.standard_normal((STEPS - 1,) + shape), rng.standard_normal((STEPS,) + shape))


def test_samplers_under_jit_match_numpy():
    z, noise, corrector, _ = _draws()
    grid = schedule.logsnr_grid(STEPS)
    pc = jax.jit(lambda *a: samplers.sample_pc(O.denoise, *a, gamma=0.3))
    np.testing.assert_allclose(pc(*map(jnp.asarray, (z, grid, noise, corrector))),
                               samplers.sample_pc(O.denoise, z, grid, noise, corrector, gamma=0.3), rtol=1e-10, atol=1e-10)


def test_reconstruction_guidance_with_jax_vjp_matches_the_exact_oracle_vjp():
    z, noise, corrector, replace = _draws()
    grid = schedule.logsnr_grid(STEPS)
    x_true = O.sample(np.random.default_rng(2).standard_normal((1,) + O.shape))
    mask = C.frame_mask(4, [0, 1])
    obs_np = C.Observation(x=np.broadcast_to(x_true, (B,) + O.shape), mask=mask)
    obs_jx = C.Observation(x=jnp.asarray(obs_np.x), mask=jnp.asarray(mask))
    want = C.sample_conditional(O.denoise_vjp, z, grid, noise, replace, obs_np, w_r=2.0, corrector_noise=corrector)

    @jax.jit
    def run(z, grid, noise, replace, corrector):
        return C.sample_conditional(guidance.with_jax_vjp(O.denoise), z, grid, noise, replace, obs_jx,
                                    w_r=2.0, corrector_noise=corrector)

    got = run(*map(jnp.asarray, (z, grid, noise, replace, corrector)))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_loss_gradient_under_jax_grad_matches_finite_differences():
    rng = np.random.default_rng(3)
    x, eps = jnp.asarray(rng.standard_normal((2, B) + O.shape))
    t = jnp.asarray([0.2, 0.5, 0.8])

    def loss(theta):
        predict = lambda z, logsnr: jnp.tanh(theta * z)  # noqa: E731
        return jnp.mean(losses.diffusion_loss(predict, x, t, eps, target="v"))

    g = jax.jit(jax.grad(loss))(0.7)
    h = 1e-6
    np.testing.assert_allclose(g, (loss(0.7 + h) - loss(0.7 - h)) / (2 * h), rtol=1e-6)
