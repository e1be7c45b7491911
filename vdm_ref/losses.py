"""The training objective (Eq. 2): E_{ε,t}[ w(λ_t) ||x̂_θ(z_t) − x||² ], in ε- or v-space.

Sec. 2: "we use the ε-prediction parameterization ... and train ε_θ using a mean squared error in
ε space with t sampled according to a cosine schedule"; some models use v-prediction [42].
MSE in ε space is Eq. 2 with w(λ) = e^{λ} (α²/σ² ||x̂ − x||² = ||ε̂ − ε||²); in v space,
w(λ) = e^{λ} + 1. An extra per-λ weight can multiply either: `loss_weight` names the ones the
training recipe offers ('none', or 'min_snr': Hang et al. 2023's Min-SNR-γ, `min_snr_weight`).
"""

from ._array import namespace
from .configs import LOSS_WEIGHTS
from .diffusion import forward_sample
from .parameterization import target_from_x_eps
from .schedule import LOGSNR_MAX, LOGSNR_MIN, logsnr_schedule_cosine


def min_snr_weight(logsnr, gamma=5.0, target="eps"):
    """w'(λ) = min(e^λ, γ) / e^λ for ε, min(e^λ, γ) / (e^λ + 1) for v (Min-SNR-γ, Hang et al. 2023).

    The extra factor that turns the target's implied weight (e^λ for ε, e^λ + 1 for v, see the
    module docstring) into w(λ) = min(e^λ, γ) in Eq. 2: the x-space error of the nearly clean
    steps (SNR > γ), whose gradients dominate and conflict with the noisy ones, is counted at
    most γ times; the noisy steps (SNR ≤ γ) keep the weight they had with ε (factor 1).
    Computed as min(1, γ e^{−λ}) for ε and σ² min(e^λ, γ) = min(e^λ, γ) sigmoid(−λ) for v.
    """
    xp = namespace(logsnr)
    capped = xp.minimum(xp.exp(logsnr), xp.full_like(logsnr, gamma))
    if target == "eps":
        return xp.minimum(xp.ones_like(logsnr), gamma * xp.exp(-logsnr))
    if target == "v":
        return capped / (xp.exp(logsnr) + 1.0)
    raise ValueError(f"target={target!r}: Min-SNR weights are defined for 'eps' and 'v'")


def loss_weight_fn(name, gamma=5.0, target="eps"):
    """The per-λ factor of `diffusion_loss` that `loss_weight` names: None for 'none',
    λ -> `min_snr_weight`(λ, γ, target) for 'min_snr'."""
    if name == "none":
        return None
    if name == "min_snr":
        return lambda logsnr: min_snr_weight(logsnr, gamma, target)
    raise ValueError(f"loss_weight={name!r}: expected one of {LOSS_WEIGHTS}")


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
    logsnr_shift=0.0,
):
    """L(x) = w(λ_t) · mean ||f_θ(z_t, λ_t) − y||²  (Eq. 2), y = ε or v, z_t = α_t x + σ_t ε.

    **Arguments:**
    - predict_fn: (z_t [B, ...], λ_t [B]) -> network output in the `target` parameterisation.
    - x: data [B, ...]; t: times [B], t ~ U[0, 1] drawn by the caller; noise: ε [B, ...].
    - target: 'eps' or 'v' (or 'x'); weight_fn: optional λ -> w(λ) per-example weight.
    - logsnr_min, logsnr_max, logsnr_shift: the schedule λ_t = λ(t) (`schedule.logsnr_schedule_cosine`).

    **Returns:** per-example losses [B] (average them for the minibatch objective).
    """
    logsnr = logsnr_schedule_cosine(t, logsnr_min, logsnr_max, logsnr_shift)
    z = forward_sample(x, logsnr, noise)
    y = target_from_x_eps(x, noise, logsnr, target)
    loss = per_example_mse(predict_fn(z, logsnr), y)
    if weight_fn is not None:
        loss = loss * weight_fn(logsnr)
    return loss
