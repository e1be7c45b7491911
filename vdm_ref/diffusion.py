"""The forward process q(z_t|x), q(z_t|z_s) (Eq. 1) and its reverse posterior q(z_s|z_t, x) (Eq. 3).

Shapes: videos x, z, noise are [B, T, H, W, C] (any rank ≥ 1 works); log-SNRs are per example, [B].
s < t means λ_s > λ_t.
"""

from ._array import log_sigmoid, namespace, per_example
from .schedule import alpha_sigma, sigma_squared


def forward_sample(x, logsnr, noise):
    """z_t = α_t x + σ_t ε ~ q(z_t|x) = N(z_t; α_t x, σ_t² I)  (Eq. 1, left).

    x, noise: [B, ...]; logsnr: λ_t, [B]. Returns z_t, [B, ...].
    """
    alpha, sigma = alpha_sigma(logsnr)
    return per_example(alpha, x) * x + per_example(sigma, x) * noise


def transition_mean_var(z_s, logsnr_s, logsnr_t):
    """q(z_t|z_s) = N(z_t; α_{t|s} z_s, σ²_{t|s} I)  (Eq. 1, right), s < t.

    α_{t|s} = α_t/α_s and σ²_{t|s} = (1 − e^{λ_t−λ_s}) σ_t² = −expm1(λ_t − λ_s) σ_t².

    z_s: [B, ...]; logsnr_s, logsnr_t: [B]. Returns (mean [B, ...], variance broadcastable [B, 1, ...]).
    """
    xp = namespace(z_s)
    alpha_s, _ = alpha_sigma(logsnr_s)
    alpha_t, _ = alpha_sigma(logsnr_t)
    var = -xp.expm1(logsnr_t - logsnr_s) * sigma_squared(logsnr_t)
    return per_example(alpha_t / alpha_s, z_s) * z_s, per_example(var, z_s)


def posterior_mean_var(z_t, x, logsnr_s, logsnr_t):
    """q(z_s|z_t, x) = N(z_s; μ̃_{s|t}, σ̃²_{s|t} I)  (Eq. 3), with r = e^{λ_t−λ_s}:

    μ̃_{s|t}(z_t, x) = r (α_s/α_t) z_t + (1 − r) α_s x,   σ̃²_{s|t} = (1 − r) σ_s².

    z_t, x: [B, ...]; logsnr_s, logsnr_t: [B]. Returns (mean [B, ...], variance [B, 1, ...]).
    """
    xp = namespace(z_t)
    alpha_s, _ = alpha_sigma(logsnr_s)
    alpha_t, _ = alpha_sigma(logsnr_t)
    r = xp.exp(logsnr_t - logsnr_s)
    one_minus_r = -xp.expm1(logsnr_t - logsnr_s)
    mean = per_example(r * alpha_s / alpha_t, z_t) * z_t + per_example(one_minus_r * alpha_s, x) * x
    return mean, per_example(one_minus_r * sigma_squared(logsnr_s), z_t)


def ancestral_variance(logsnr_s, logsnr_t, gamma):
    """The sampling variance of Eq. 4: (σ̃²_{s|t})^{1−γ} (σ²_{t|s})^{γ}, interpolated in log space.

    = −expm1(λ_t − λ_s) · exp((1 − γ) log σ_s² + γ log σ_t²), since σ̃²_{s|t} = (1−r) σ_s² and
    σ²_{t|s} = (1−r) σ_t² share the factor (1 − r). logsnr_s, logsnr_t: [B]; γ scalar in [0, 1].
    Returns [B].
    """
    xp = namespace(logsnr_s)
    log_var = (1.0 - gamma) * log_sigmoid(-logsnr_s) + gamma * log_sigmoid(-logsnr_t)
    return -xp.expm1(logsnr_t - logsnr_s) * xp.exp(log_var)
