"""Conditional sampling from an unconditional model (Sec. 3.1): the replacement method in both
variants, and reconstruction-guided sampling (Eq. 7/8) on top of it.

An `Observation` says what is known: full-resolution entries xᵃ where `mask` = 1 (prefix frames
for extension, every k-th frame for interpolation, any pixel mask), and/or a low-resolution video
yᵃ (Eq. 8) on the frames where `low_res_mask` = 1. Both at once is the cascade of Fig. 2.
"""

import dataclasses
from typing import Any

from ._array import namespace
from .diffusion import forward_sample, posterior_mean_var
from .guidance import reconstruction_guided_denoiser
from .samplers import LANGEVIN_DELTA, reverse_process

REPLACEMENTS = ("marginal", "posterior")


@dataclasses.dataclass(frozen=True)
class Observation:
    """What conditional sampling conditions on.

    - x: [B, T, H, W, C] full-resolution values, read where mask = 1 (anything elsewhere).
    - mask: 1 for known entries, same rank as x, broadcastable to it (e.g. [1, T, 1, 1, 1]).
    - low_res: [B, T, H/k, W/k, C] low-resolution video yᵃ (Eq. 8), read where low_res_mask = 1.
    - low_res_mask: [1, T, 1, 1, 1] (or broadcastable) frames that have a low-res observation.
    - factor: k, the spatial downsampling factor of low_res.
    """

    x: Any = None
    mask: Any = None
    low_res: Any = None
    low_res_mask: Any = None
    factor: int = 1

    def __post_init__(self):
        if (self.x is None) != (self.mask is None):
            raise ValueError("Observation needs both x and mask, or neither")
        if (self.low_res is None) != (self.low_res_mask is None):
            raise ValueError("Observation needs both low_res and low_res_mask, or neither")
        if self.x is None and self.low_res is None:
            raise ValueError("Observation must observe something: give x and mask and/or low_res")
        if self.x is not None and self.x.ndim != self.mask.ndim:
            raise ValueError(f"mask must have the rank of x ({self.x.ndim}), got shape {tuple(self.mask.shape)}")

    def known_mask(self, z):
        """m: 1 where z's entries are known at full resolution (0 everywhere if none are)."""
        xp = namespace(z)
        return xp.zeros_like(z) if self.mask is None else self.mask * xp.ones_like(z)

    def update_mask(self, z):
        """1 − m: the entries the sampler generates (the b part)."""
        return 1 - self.known_mask(z)


def frame_mask(num_frames, known, xp=None):
    """A [1, T, 1, 1, 1] mask with 1 at the listed known frame indices."""
    if xp is None:
        import numpy as xp
    bad = [i for i in known if not 0 <= i < num_frames]
    if bad:
        raise ValueError(f"known frame indices {bad} are outside [0, {num_frames})")
    m = xp.asarray([1.0 if i in set(known) else 0.0 for i in range(num_frames)])
    return xp.reshape(m, (1, num_frames, 1, 1, 1))


def prefix_frames(num_frames, num_known):
    """Known indices for extension / prediction: the first num_known frames."""
    return list(range(num_known))


def every_kth_frame(num_frames, k):
    """Known indices for temporal interpolation: frames 0, k, 2k, ..."""
    return list(range(0, num_frames, k))


def replace_marginal(z_s, x_a, mask, logsnr_s, noise):
    """zᵃ_s ~ q(zᵃ_s | xᵃ) = N(α_s xᵃ, σ_s² I), placed where mask = 1 (replacement, variant 1)."""
    return mask * forward_sample(x_a, logsnr_s, noise) + (1 - mask) * z_s


def replace_posterior(z_s, z_t, x_a, mask, logsnr_s, logsnr_t, noise):
    """zᵃ_s ~ q(zᵃ_s | xᵃ, zᵃ_t) = N(μ̃_{s|t}(zᵃ_t, xᵃ), σ̃²_{s|t} I) (Eq. 3; replacement, variant 2)."""
    xp = namespace(z_s)
    mean, var = posterior_mean_var(z_t, x_a, logsnr_s, logsnr_t)
    return mask * (mean + xp.sqrt(var) * noise) + (1 - mask) * z_s


def sample_conditional(denoise_vjp, z, logsnrs, noise, replace_noise, observation, *, w_r=0.0,
                       replacement="marginal", gamma=0.0, corrector_noise=None,
                       delta=LANGEVIN_DELTA):
    """Sample x^b ~ p(x^b | xᵃ) with an unconditional model (Sec. 3.1).

    At every step the known entries zᵃ_s are replaced (`replacement`: 'marginal' draws from
    q(zᵃ_s|xᵃ), 'posterior' from q(zᵃ_s|xᵃ, zᵃ_t)); the model's x̂ is adjusted by reconstruction
    guidance with weight w_r (Eq. 7 for observation.x, Eq. 8 for observation.low_res; w_r = 0 is
    the plain replacement method). With corrector_noise the Langevin corrector (Eq. 5) moves the
    generated entries after each step (predictor-corrector).

    **Arguments:** denoise_vjp(z, λ) -> (x̂, vjp); z: z_1 [B, ...]; logsnrs: [steps + 1];
    noise, corrector_noise: [steps − 1, B, ...]; replace_noise: [steps, B, ...] (index 0 draws
    zᵃ_1); w_r, γ, δ: scalars. (`vdm_fast`'s twin takes the plain denoise_fn and builds the vjp
    by `jax.vjp`, and accepts `jax.random` keys for the noise arrays: `noise_from_key` there.)

    **Returns:** x [B, ...] with the known entries set to xᵃ.
    """
    if replacement not in REPLACEMENTS:
        raise ValueError(f"replacement must be one of {REPLACEMENTS}, got {replacement!r}")
    steps = logsnrs.shape[0] - 1
    if tuple(replace_noise.shape) != (steps,) + tuple(z.shape):
        raise ValueError(
            f"replace_noise must have shape [steps, *z.shape] = {(steps,) + tuple(z.shape)}, "
            f"got {tuple(replace_noise.shape)}"
        )
    xp = namespace(z)
    m = observation.known_mask(z)
    x_a = xp.zeros_like(z) if observation.x is None else observation.x * xp.ones_like(z)

    def replace_fn(z_s, z_t, logsnr_s, logsnr_t, i):
        if replacement == "marginal":
            return replace_marginal(z_s, x_a, m, logsnr_s, replace_noise[i + 1])
        return replace_posterior(z_s, z_t, x_a, m, logsnr_s, logsnr_t, replace_noise[i + 1])

    logsnr_1 = xp.full((z.shape[0],), logsnrs[0], dtype=z.dtype)
    z = replace_marginal(z, x_a, m, logsnr_1, replace_noise[0])
    denoise_fn = reconstruction_guided_denoiser(denoise_vjp, observation, w_r)
    x = reverse_process(denoise_fn, z, logsnrs, noise, corrector_noise, gamma=gamma, delta=delta,
                        replace_fn=replace_fn, update_mask=1 - m)
    return m * x_a + (1 - m) * x
