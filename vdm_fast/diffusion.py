"""The forward process q(z_t|x), q(z_t|z_s) (Eq. 1) and its posterior q(z_s|z_t, x) (Eq. 3), float32.

Twin of `vdm_ref.diffusion`: the reference formulas (log-space, `expm1`) are already right under
`jax.jit`, so each function here casts its inputs to float32 and calls them inside one jitted
program. Shapes as in the reference: videos [B, ...], log-SNRs per example [B], s < t ⇔ λ_s > λ_t.
"""

import jax

from vdm_ref import diffusion as _ref

from .schedule import _float32


@jax.jit
def forward_sample(x, logsnr, noise):
    """z_t = α_t x + σ_t ε ~ q(z_t|x)  (Eq. 1, left). x, noise: [B, ...]; λ_t: [B]. float32."""
    return _ref.forward_sample(*_float32(x, logsnr, noise))


@jax.jit
def transition_mean_var(z_s, logsnr_s, logsnr_t):
    """q(z_t|z_s) = N(α_{t|s} z_s, σ²_{t|s} I), σ²_{t|s} = −expm1(λ_t − λ_s) σ_t²  (Eq. 1, right).

    Returns (mean [B, ...], variance [B, 1, ...]), float32.
    """
    return _ref.transition_mean_var(*_float32(z_s, logsnr_s, logsnr_t))


@jax.jit
def posterior_mean_var(z_t, x, logsnr_s, logsnr_t):
    """q(z_s|z_t, x): μ̃ = r (α_s/α_t) z_t + (1 − r) α_s x, σ̃² = (1 − r) σ_s², r = e^{λ_t−λ_s}  (Eq. 3).

    Returns (mean [B, ...], variance [B, 1, ...]), float32.
    """
    return _ref.posterior_mean_var(*_float32(z_t, x, logsnr_s, logsnr_t))


@jax.jit
def ancestral_variance(logsnr_s, logsnr_t, gamma):
    """(σ̃²_{s|t})^{1−γ} (σ²_{t|s})^{γ} of Eq. 4, interpolated in log space. [B] -> [B], float32.

    γ may be a traced scalar: changing it does not recompile.
    """
    return _ref.ancestral_variance(*_float32(logsnr_s, logsnr_t, gamma))
