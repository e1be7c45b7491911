"""The training objective (Eq. 2): E_{ε,t}[ w(λ_t) ||x̂_θ(z_t) − x||² ], in ε- or v-space.

Sec. 2: "we use the ε-prediction parameterization ... and train ε_θ using a mean squared error in
ε space with t sampled according to a cosine schedule"; some models use v-prediction [42].
MSE in ε space is Eq. 2 with w(λ) = e^{λ} (α²/σ² ||x̂ − x||² = ||ε̂ − ε||²); in v space,
w(λ) = e^{λ} + 1. An extra per-λ weight can multiply either.
"""

from ._array import namespace
from .diffusion import forward_sample
from .parameterization import target_from_x_eps
from .schedule import LOGSNR_MAX, LOGSNR_MIN, logsnr_schedule_cosine


def per_example_mse(a, b):
    """mean over all non-batch axes of (a − b)²; a, b: [B, ...] -> [B]."""
    xp = namespace(a, b)
    return xp.mean(xp.reshape((a - b) ** 2, (a.shape[0], -1)), axis=1)


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
    - predict_fn: (z_t [B, ...], λ_t [B]) -> network output in the `target` parameterisation.
    - x: data [B, ...]; t: times [B], t ~ U[0, 1] drawn by the caller; noise: ε [B, ...].
    - target: 'eps' or 'v' (or 'x'); weight_fn: optional λ -> w(λ) per-example weight.

    **Returns:** per-example losses [B] (average them for the minibatch objective).
    """
    logsnr = logsnr_schedule_cosine(t, logsnr_min, logsnr_max)
    z = forward_sample(x, logsnr, noise)
    y = target_from_x_eps(x, noise, logsnr, target)
    loss = per_example_mse(predict_fn(z, logsnr), y)
    if weight_fn is not None:
        loss = loss * weight_fn(logsnr)
    return loss
