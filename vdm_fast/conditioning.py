"""Conditional sampling from an unconditional model (Sec. 3.1), compiled whole: the replacement
method in both variants and reconstruction-guided sampling (Eq. 7/8) on top of it, with or
without the Langevin corrector.

Twin of `vdm_ref.conditioning`. `Observation` is an `eqx.Module` here (a pytree: its arrays are
traced, its `factor` static), so one compiled program serves every observed video of a shape. It
is defined in `vdm_fast.guidance` (which reads it) and re-exported here, so imports point one way:
conditioning -> guidance.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from vdm_ref import conditioning as _ref
from vdm_ref.conditioning import REPLACEMENTS, every_kth_frame, prefix_frames  # noqa: F401 (re-exported twins)

from .guidance import Observation, as_observation, reconstruction_guided_denoiser  # noqa: F401 (Observation re-exported)
from .samplers import (
    LANGEVIN_DELTA,
    _check_grid,
    _check_source,
    _draw,
    _loop,
    _run,
    per_step_logsnr,
)
from .schedule import _float32


def frame_mask(num_frames, known, xp=None):
    """A [1, T, 1, 1, 1] float32 mask with 1 at the listed known frame indices.

    `xp` is accepted for signature parity with the reference and ignored (always a jax array).
    """
    del xp
    return jnp.asarray(_ref.frame_mask(num_frames, known), dtype=jnp.float32)


@jax.jit
def replace_marginal(z_s, x_a, mask, logsnr_s, noise):
    """zᵃ_s ~ q(zᵃ_s | xᵃ) = N(α_s xᵃ, σ_s² I), placed where mask = 1 (replacement, variant 1). float32."""
    return _ref.replace_marginal(*_float32(z_s, x_a, mask, logsnr_s, noise))


@jax.jit
def replace_posterior(z_s, z_t, x_a, mask, logsnr_s, logsnr_t, noise):
    """zᵃ_s ~ q(zᵃ_s | xᵃ, zᵃ_t) = N(μ̃_{s|t}(zᵃ_t, xᵃ), σ̃²_{s|t} I) (Eq. 3; variant 2). float32."""
    return _ref.replace_posterior(*_float32(z_s, z_t, x_a, mask, logsnr_s, logsnr_t, noise))


def _sample_conditional(denoise_vjp, z, logsnrs, noise, replace_noise, observation, w_r, replacement,
                        gamma, corrector_noise, delta, progress_token, progress_every):
    """The traced body of `sample_conditional` (compiled by `_compiled_conditional`)."""
    guided = reconstruction_guided_denoiser(denoise_vjp, observation, w_r)
    if observation.x is None:  # purely spatial (Eq. 8): nothing to replace, every entry generated
        return _loop(guided, z, logsnrs, noise, corrector_noise, gamma, delta, None, None,
                     progress_token, progress_every)
    m = observation.known_mask(z)
    x_a = observation.x * jnp.ones_like(z)

    def replace_fn(z_s, z_t, logsnr_s, logsnr_t, i):
        eps = _draw(replace_noise, i + 1, z.shape)
        if replacement == "marginal":
            return replace_marginal(z_s, x_a, m, logsnr_s, eps)
        return replace_posterior(z_s, z_t, x_a, m, logsnr_s, logsnr_t, eps)

    z = replace_marginal(z, x_a, m, per_step_logsnr(logsnrs, 0, z), _draw(replace_noise, 0, z.shape))
    x = _loop(guided, z, logsnrs, noise, corrector_noise, gamma, delta, replace_fn, 1 - m,
              progress_token, progress_every)
    return m * x_a + (1 - m) * x


_compiled_conditional = eqx.filter_jit(_sample_conditional)


def sample_conditional(denoise_vjp, z, logsnrs, noise, replace_noise, observation, *, w_r=0.0,
                       replacement="marginal", gamma=0.0, corrector_noise=None,
                       delta=LANGEVIN_DELTA, progress=None, progress_every=1):
    """Sample xᵇ ~ p(xᵇ | xᵃ) with an unconditional model (Sec. 3.1), as one compiled program.

    As `vdm_ref.conditioning.sample_conditional`: at every step the known entries zᵃ_s are
    replaced ('marginal': from q(zᵃ_s|xᵃ); 'posterior': from q(zᵃ_s|xᵃ, zᵃ_t)); the model's x̂ is
    adjusted by reconstruction guidance with weight w_r (Eq. 7 for observation.x, Eq. 8 for
    observation.low_res, both at once for the cascade of Fig. 2; w_r = 0 is plain replacement,
    its backward pass multiplied by 0: see `guidance.ReconstructionGuidedDenoiser`); with corrector_noise the Langevin corrector (Eq. 5) moves the
    generated entries after each step.

    Differences from the reference:
    - denoise_vjp: the model's plain denoise_fn(z, λ) -> x̂ — the vjp is built by `jax.vjp` inside
      the compiled loop — or `guidance.with_jax_vjp(fn)`, or `guidance.DenoiseVJP(denoise_vjp)`
      for a callable that returns (x̂, vjp) itself. Pass a pytree-callable (`eqx.Module`) so the
      weights are traced.
    - noise, corrector_noise ([steps − 1, B, ...]) and replace_noise ([steps, B, ...], index 0
      draws zᵃ_1) may each be a `jax.random` key: draw i = normal(fold_in(key, i)), materialised
      for the reference by `samplers.noise_from_key(key, count, z.shape)`.
    - w_r, γ, δ and the observed values are traced: changing them does not recompile. The
      replacement variant, corrector on/off and which parts the observation has are static.
    - progress, progress_every: as in `vdm_fast.samplers`.

    **Returns:** x [B, ...] float32, with the known entries set to xᵃ.
    """
    if replacement not in REPLACEMENTS:
        raise ValueError(f"replacement must be one of {REPLACEMENTS}, got {replacement!r}")
    z, logsnrs, steps = _check_grid(z, logsnrs)
    observation = as_observation(observation)
    _check_observation(observation, z)
    noise = _check_source("noise", noise, steps - 1, z)
    replace_noise = _check_source("replace_noise", replace_noise, steps, z)
    if corrector_noise is not None:
        corrector_noise = _check_source("corrector_noise", corrector_noise, steps - 1, z)
    return _run(_compiled_conditional, progress, progress_every, denoise_vjp, z, logsnrs, noise,
                replace_noise, observation, _float32(w_r), replacement, _float32(gamma),
                corrector_noise, _float32(delta))


def _broadcasts_to(shape, target):
    try:
        return np.broadcast_shapes(tuple(shape), tuple(target)) == tuple(target)
    except ValueError:
        return False


def _check_observation(observation, z):
    """Shapes of the observation against z [B, T, H, W, C], before any compilation."""
    if observation.x is not None:
        for name in ("x", "mask"):
            a = getattr(observation, name)
            if not _broadcasts_to(a.shape, z.shape):
                raise ValueError(f"observation.{name} of shape {a.shape} does not broadcast to z's {z.shape}")
    if observation.low_res is not None:
        if z.ndim != 5:
            raise ValueError(f"a low-resolution observation needs videos [B, T, H, W, C], got z of shape {z.shape}")
        b, t, h, w, c = z.shape
        k = observation.factor
        if h % k or w % k:
            raise ValueError(f"spatial size {h}x{w} is not divisible by the downsampling factor {k}")
        want = (b, t, h // k, w // k, c)
        for name in ("low_res", "low_res_mask"):
            a = getattr(observation, name)
            if not _broadcasts_to(a.shape, want):
                raise ValueError(f"observation.{name} of shape {a.shape} does not broadcast to {want} "
                                 f"(z {z.shape} downsampled by {k})")
