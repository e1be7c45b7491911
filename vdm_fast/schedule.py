"""The cosine log-SNR noise schedule and α, σ from λ (Sec. 2), float32 under `jax.jit`.

Twin of `vdm_ref.schedule`. The formulas are the reference's (they are right under jit); this
module casts their inputs to float32, the dtype of the whole fast backend, and jits them.

Dtypes: every function here and in the other `vdm_fast` maths modules casts its array inputs to
float32 (even when `jax_enable_x64` is on and the caller passes NumPy float64) and returns float32
`jax.Array`s. Float32 λ(1) over the range [−20, 20] comes out ≈ −20.001 (tan near π/2), which is
why `logsnr_grid` is computed in float64 on the host and rounded once.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from vdm_ref import schedule as _ref
from vdm_ref.schedule import LOGSNR_MAX, LOGSNR_MIN

DTYPE = jnp.float32
"""The compute dtype of the fast backend's diffusion maths and sampler state."""


def _float32(*arrays):
    """Each argument as a float32 `jax.Array` (the fast backend's compute dtype)."""
    out = tuple(jnp.asarray(a, dtype=DTYPE) for a in arrays)
    return out[0] if len(out) == 1 else out


@functools.partial(jax.jit, static_argnames=("logsnr_min", "logsnr_max", "shift"))
def logsnr_schedule_cosine(t, logsnr_min=LOGSNR_MIN, logsnr_max=LOGSNR_MAX, shift=0.0):
    """λ(t) = s − 2 log tan(a t + b), b = atan(exp(−(λ_max − s)/2)), a = atan(exp(−(λ_min − s)/2)) − b.

    float32 twin of `vdm_ref.schedule.logsnr_schedule_cosine` (s = 0: the paper's schedule);
    t: any shape, in [0, 1].
    """
    return _ref.logsnr_schedule_cosine(_float32(t), logsnr_min, logsnr_max, shift)


@functools.partial(jax.jit, static_argnames=("logsnr_min", "logsnr_max", "shift"))
def t_from_logsnr_cosine(logsnr, logsnr_min=LOGSNR_MIN, logsnr_max=LOGSNR_MAX, shift=0.0):
    """t(λ) = (atan(exp(−(λ − s)/2)) − b) / a, the inverse of `logsnr_schedule_cosine` (float32)."""
    return _ref.t_from_logsnr_cosine(_float32(logsnr), logsnr_min, logsnr_max, shift)


@jax.jit
def alpha_sigma(logsnr):
    """α = sqrt(sigmoid(λ)), σ = sqrt(sigmoid(−λ)), in log space (float32). Returns (α, σ)."""
    return _ref.alpha_sigma(_float32(logsnr))


@jax.jit
def alpha_squared(logsnr):
    """α² = sigmoid(λ) (float32)."""
    return _ref.alpha_squared(_float32(logsnr))


@jax.jit
def sigma_squared(logsnr):
    """σ² = sigmoid(−λ) (float32)."""
    return _ref.sigma_squared(_float32(logsnr))


def logsnr_grid(steps, logsnr_min=LOGSNR_MIN, logsnr_max=LOGSNR_MAX, xp=None, shift=0.0):
    """λ at the uniform grid t_i = 1 − i/steps, i = 0..steps: shape [steps + 1], λ_min to λ_max.

    Computed in float64 NumPy by `vdm_ref.schedule.logsnr_grid` and rounded once to a float32
    `jax.Array`, so the endpoints are exactly ±20 in float32 too. `xp` is accepted for
    signature parity with the reference and ignored: the fast grid is always a jax array.
    """
    del xp
    return jnp.asarray(np.asarray(_ref.logsnr_grid(steps, logsnr_min, logsnr_max, shift=shift)),
                       dtype=DTYPE)
