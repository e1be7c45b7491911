"""The training objective (Eq. 2) in float32, traceable inside a jitted train step.

Twin of `vdm_ref.losses`: L(x) = w(λ_t) · mean ||f_θ(z_t, λ_t) − y||², y = ε or v, z_t = α_t x + σ_t ε.
MSE in ε space is Eq. 2 with w(λ) = e^λ; in v space w(λ) = e^λ + 1; `weight_fn` multiplies either.
`draw_t_and_noise` draws t ~ U[0, 1] and ε from a key, for a train step that takes a key.
"""

import equinox as eqx
import jax
import jax.numpy as jnp

from .diffusion import forward_sample
from .parameterization import target_from_x_eps
from .schedule import DTYPE, LOGSNR_MAX, LOGSNR_MIN, _float32, logsnr_schedule_cosine


@jax.jit
def per_example_mse(a, b):
    """mean over all non-batch axes of (a − b)²; a, b: [B, ...] -> [B] (float32)."""
    a, b = _float32(a, b)
    return jnp.mean(jnp.reshape((a - b) ** 2, (a.shape[0], -1)), axis=1)


@eqx.filter_jit
def diffusion_loss(
    predict_fn,
    x,
    t,
    noise,
    *,
    target="eps",
    logsnr_min=LOGSNR_MIN,
    logsnr_max=LOGSNR_MAX,
    weight_fn=None,
):
    """L(x) = w(λ_t) · mean ||f_θ(z_t, λ_t) − y||²  (Eq. 2), y = ε or v, z_t = α_t x + σ_t ε.

    **Arguments:**
    - predict_fn: (z_t [B, ...], λ_t [B]) -> network output in the `target` parameterisation; a
      pytree-callable (e.g. an `eqx.Module`) so that its weights are traced and differentiable
      with `eqx.filter_grad`. Its output is cast to float32 before the MSE (bf16 networks).
    - x: data [B, ...]; t: times [B], t ~ U[0, 1] drawn by the caller (`draw_t_and_noise`);
      noise: ε [B, ...]. All cast to float32.
    - target: 'eps' or 'v' (or 'x'); weight_fn: optional λ -> w(λ) per-example weight.

    **Returns:** per-example losses [B], float32 (average them for the minibatch objective).
    """
    x, t, noise = _float32(x, t, noise)
    logsnr = logsnr_schedule_cosine(t, logsnr_min, logsnr_max)
    z = forward_sample(x, logsnr, noise)
    y = target_from_x_eps(x, noise, logsnr, target)
    loss = per_example_mse(predict_fn(z, logsnr), y)
    if weight_fn is not None:
        loss = loss * weight_fn(logsnr)
    return loss


def draw_t_and_noise(key, x):
    """(t ~ U[0, 1] of shape [B], ε ~ N(0, I) of x's shape), float32, from one `jax.random` key.

    Not in `vdm_ref` (whose loss takes t and ε as arrays): a fast train step draws them inside
    the jitted program; materialise them with this function to feed the reference the same draws.
    """
    key_t, key_eps = jax.random.split(key)
    t = jax.random.uniform(key_t, (x.shape[0],), dtype=DTYPE)
    return t, jax.random.normal(key_eps, x.shape, dtype=DTYPE)
