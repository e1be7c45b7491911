"""Preview samples during training: `vdm_fast.samplers.sample_ancestral` (Eq. 4, compiled whole),
or `sample_pc` (Eq. 4 + 5) where the config sets the Langevin corrector,
with the EMA parameters.

x̂ is clipped to the data range [−1, 1] at every step (static thresholding, standard for
pixel-space models). The denoiser is an `eqx.Module`, so the weights are traced arguments: the
sampler compiles once per run, not once per call.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vdm_fast.samplers import sample_ancestral, sample_pc
from vdm_fast.backend import Denoiser
from vdm_ref.schedule import logsnr_grid


def sample_videos(params, key, *, config, num, steps, frames=None, gamma=None, cond=None):
    """`num` videos [num, frames, S, S, C] in [−1, 1] from z_1 ~ N(0, I) by Eq. 4, with one
    Langevin correction (Eq. 5, δ = config.diffusion.langevin_delta) after each step where
    config.diffusion.langevin_corrector is set (the sampler `python cli.py sample` uses by default).

    params: shared layout (e.g. the EMA); cond: None (the null condition) or the condition for
    `num` examples; gamma: default config.diffusion.gamma.
    """
    from vdm_fast.network import from_params

    u, d = config.unet, config.diffusion
    frames = u.frames if frames is None else frames
    shape = (num, frames, u.image_size, u.image_size, u.in_channels)
    grid = jnp.asarray(logsnr_grid(steps, d.logsnr_min, d.logsnr_max, shift=d.logsnr_shift), jnp.float32)
    k_z, k_noise = jax.random.split(key)
    denoiser = Denoiser(from_params(u, params), u.target, cond=cond, clip_x=True)
    z = jax.random.normal(k_z, shape, jnp.float32)
    gamma = d.gamma if gamma is None else gamma
    if d.langevin_corrector:
        return sample_pc(denoiser, z, grid, k_noise, jax.random.fold_in(k_noise, 1), gamma=gamma,
                         delta=d.langevin_delta)
    return sample_ancestral(denoiser, z, grid, k_noise, gamma=gamma)
