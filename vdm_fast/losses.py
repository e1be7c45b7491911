"""The training objective (Eq. 2) in float32: twin of `vdm_ref.losses`.

L(x) = w(λ_t) · mean ||f_θ(z_t, λ_t) − y||², y = ε or v, z_t = α_t x + σ_t ε. The reference
functions are array-API code that is already right under `jax.jit` (see `vdm_fast.diffusion`),
so each function here casts its inputs to float32 and calls the reference inside one jitted
program, rather than copying its maths. The fast train step (`vdm_fast.train`) computes
Eq. 2 through `vdm_ref.train.loss_fn`, which calls `vdm_ref.losses.diffusion_loss` under jit,
and draws t and ε with `vdm_ref.train.step_randomness`.
"""

import functools

import equinox as eqx
import jax

from vdm_ref import losses as _ref

from .schedule import LOGSNR_MAX, LOGSNR_MIN, _float32


#: The loss weightings of the recipe (`vdm_ref.losses.LOSS_WEIGHTS`).
LOSS_WEIGHTS = _ref.LOSS_WEIGHTS


@functools.partial(jax.jit, static_argnames=("gamma", "target"))
def min_snr_weight(logsnr, gamma=5.0, target="eps"):
    """w'(λ) = min(e^λ, γ) / e^λ for ε, min(e^λ, γ) / (e^λ + 1) for v (Min-SNR-γ): as
    `vdm_ref.losses.min_snr_weight`, float32 under jit."""
    return _ref.min_snr_weight(_float32(logsnr), gamma, target)


def loss_weight_fn(name, gamma=5.0, target="eps"):
    """The per-λ factor `name` selects: None for 'none', λ -> `min_snr_weight`(λ, γ, target)."""
    if _ref.loss_weight_fn(name, gamma, target) is None:
        return None
    return lambda logsnr: min_snr_weight(logsnr, gamma, target)


@jax.jit
def per_example_mse(a, b):
    """mean over all non-batch axes of (a − b)²; a, b: [B, ...] -> [B] (float32)."""
    return _ref.per_example_mse(*_float32(a, b))


@eqx.filter_jit
def diffusion_loss(predict_fn, x, t, noise, *, target="eps", logsnr_min=LOGSNR_MIN,
                   logsnr_max=LOGSNR_MAX, weight_fn=None, logsnr_shift=0.0):
    """L(x) = w(λ_t) · mean ||f_θ(z_t, λ_t) − y||²  (Eq. 2), y = ε or v, z_t = α_t x + σ_t ε.

    As `vdm_ref.losses.diffusion_loss`, in float32 under `eqx.filter_jit`:

    **Arguments:**
    - predict_fn: (z_t [B, ...], λ_t [B]) -> network output in the `target` parameterisation; a
      pytree-callable (e.g. an `eqx.Module`) so that its weights are traced and differentiable
      with `eqx.filter_grad`. Its output is cast to float32 before the MSE (bf16 networks).
    - x: data [B, ...]; t: times [B], t ~ U[0, 1] drawn by the caller; noise: ε [B, ...]. All
      cast to float32.
    - target: 'eps' or 'v' (or 'x'); weight_fn: optional λ -> w(λ) per-example weight;
      logsnr_shift: the schedule's shift s (`vdm_ref.schedule.logsnr_schedule_cosine`).

    **Returns:** per-example losses [B], float32 (average them for the minibatch objective).
    """
    x, t, noise = _float32(x, t, noise)

    def predict(z, logsnr):
        return _float32(predict_fn(z, logsnr))

    return _ref.diffusion_loss(predict, x, t, noise, target=target, logsnr_min=logsnr_min,
                               logsnr_max=logsnr_max, weight_fn=weight_fn, logsnr_shift=logsnr_shift)
