"""The cosine log-SNR noise schedule and α, σ from λ (Sec. 2; DESIGN.md numerical contract).

λ = log(α²/σ²) decreases with t; α² = sigmoid(λ), σ² = sigmoid(−λ), so α² + σ² = 1.
"""

import math

from ._array import log_sigmoid, namespace, sigmoid

LOGSNR_MIN = -20.0
LOGSNR_MAX = 20.0


def _cosine_ab(logsnr_min, logsnr_max, shift=0.0):
    """b = atan(exp(−(λ_max − s)/2)), a = atan(exp(−(λ_min − s)/2)) − b (Python floats)."""
    if not logsnr_min < logsnr_max:
        raise ValueError(
            f"logsnr range must satisfy logsnr_min < logsnr_max, got [{logsnr_min}, {logsnr_max}]"
        )
    b = math.atan(math.exp(-0.5 * (logsnr_max - shift)))
    a = math.atan(math.exp(-0.5 * (logsnr_min - shift))) - b
    return a, b


def logsnr_schedule_cosine(t, logsnr_min=LOGSNR_MIN, logsnr_max=LOGSNR_MAX, shift=0.0):
    """λ(t) = s − 2 log tan(a t + b), the cosine schedule [37] over the range [λ_min, λ_max].

    b = atan(exp(−(λ_max − s)/2)), a = atan(exp(−(λ_min − s)/2)) − b, so λ(0) = λ_max and
    λ(1) = λ_min. s = 0 is the paper's schedule; a shift s moves the curve by s inside the same
    range (λ(½) ≈ s for a wide range such as [−20, 20]): the "shifted cosine" schedule of
    Hoogeboom, Heek and Salimans 2023 (simple diffusion: λ + 2 log(64/d) for d×d images), which
    the paper does not use.

    **Arguments:** t: array of times in [0, 1], any shape; shift: s (a Python float).
    **Returns:** λ(t), same shape.
    """
    xp = namespace(t)
    a, b = _cosine_ab(logsnr_min, logsnr_max, shift)
    return shift - 2.0 * xp.log(xp.tan(a * t + b))


def t_from_logsnr_cosine(logsnr, logsnr_min=LOGSNR_MIN, logsnr_max=LOGSNR_MAX, shift=0.0):
    """t(λ) = (atan(exp(−(λ − s)/2)) − b) / a, the inverse of `logsnr_schedule_cosine`."""
    xp = namespace(logsnr)
    a, b = _cosine_ab(logsnr_min, logsnr_max, shift)
    return (xp.atan(xp.exp(-0.5 * (logsnr - shift))) - b) / a


def alpha_sigma(logsnr):
    """α = sqrt(sigmoid(λ)), σ = sqrt(sigmoid(−λ)), computed as exp(½ log sigmoid(±λ)).

    **Arguments:** logsnr: λ, any shape. **Returns:** (α, σ), each the shape of λ.
    """
    xp = namespace(logsnr)
    return xp.exp(0.5 * log_sigmoid(logsnr)), xp.exp(0.5 * log_sigmoid(-logsnr))


def alpha_squared(logsnr):
    """α² = sigmoid(λ)."""
    return sigmoid(logsnr)


def sigma_squared(logsnr):
    """σ² = sigmoid(−λ)."""
    return sigmoid(-logsnr)


def logsnr_grid(steps, logsnr_min=LOGSNR_MIN, logsnr_max=LOGSNR_MAX, xp=None, shift=0.0):
    """λ at the uniform sampling grid t_i = 1 − i/steps, i = 0..steps (Sec. 2: "s, t follow a
    uniformly spaced sequence from 1 to 0"). Returns shape [steps + 1], from λ_min to λ_max
    (`shift`: the schedule's s, as in `logsnr_schedule_cosine`).
    """
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if xp is None:
        import numpy as xp
    t = 1.0 - xp.arange(steps + 1, dtype=xp.float64) / steps
    return logsnr_schedule_cosine(t, logsnr_min, logsnr_max, shift)
