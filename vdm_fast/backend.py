"""The one backend switch ('fast' | 'ref') and the one denoiser wrapper x̂_θ.

Every command that runs a network (training, generation, evaluation, benchmarks) picks its
implementation here and nowhere else:

- `network(config, params, backend=...)`: the 3D U-Net (Sec. 3, Fig. 1) as a callable
  `net(z, logsnr, cond=None, frame_mask=None, *, key=None)`; 'fast' is the Equinox U-Net of
  `vdm_fast.network`, 'ref' is `vdm_ref.network.apply` on jax.numpy float32.
- `network_apply(backend)`: the same as a function of the parameters,
  `apply(params, unet_config, z, logsnr, cond, frame_mask, *, dropout_rng)`, for train steps that
  differentiate with respect to the parameters; `parts` evaluates the batch as that many
  independent parts in one program (`in_parts`).
- `Denoiser`: x̂_θ(z_t, λ_t, c) from the network's prediction, what every sampler consumes.
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from vdm_ref.configs import UNetConfig
from vdm_ref.parameterization import x_from_prediction

BACKENDS = ("fast", "ref")


def check_backend(backend: str) -> str:
    """`backend` if it is one of BACKENDS, else ValueError naming it."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: expected one of {BACKENDS}")
    return backend


class RefNetwork(eqx.Module):
    """`vdm_ref.network.apply(params, config, ...)` as a pytree-callable (params traced)."""

    params: dict
    config: UNetConfig = eqx.field(static=True)

    def __call__(self, z, logsnr, cond=None, frame_mask=None, *, key=None):
        from vdm_ref.network import apply

        return apply(self.params, self.config, z, logsnr, cond, frame_mask, dropout_rng=key)


def network(config: UNetConfig, params: dict, *, backend: str = "fast", compute_dtype=None,
            remat: bool = False):
    """The U-Net of `backend` on `params` (shared layout, NumPy or JAX arrays).

    'fast': `vdm_fast.network.from_params` (computing in `compute_dtype`, e.g. 'bfloat16';
    `remat` rematerialises every block); 'ref': `RefNetwork` in float32.
    """
    if check_backend(backend) == "fast":
        from vdm_fast.network import from_params

        return from_params(config, params, compute_dtype=compute_dtype, remat=remat)
    return RefNetwork(jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), params), config)


def network_apply(backend: str = "fast", *, compute_dtype=None, remat: bool = False, parts: int = 1):
    """The network as apply(params, unet_config, z, logsnr, cond, frame_mask, *, dropout_rng).

    'fast': the Equinox U-Net built from the shared-layout dict inside the traced function (free
    under jit); 'ref': `vdm_ref.network.apply` on jax.numpy. parts > 1: `in_parts`.
    """
    if check_backend(backend) == "ref":
        from vdm_ref.network import apply

        return apply if parts == 1 else in_parts(apply, parts)
    fast = functools.partial(_fast_apply, compute_dtype=compute_dtype, remat=remat)
    return fast if parts == 1 else in_parts(fast, parts)


def in_parts(apply, parts: int):
    """`apply` on the batch as `parts` equal, independent slices, concatenated: the same function
    (the network treats every example on its own), traced as `parts` separate evaluations.

    Why: a compiled program whose two halves share no data lets XLA's CPU runtime run them side
    by side on the cores, which one stream of small operations leaves idle (docs/benchmarks.md
    "One device, the batch in two parts"). Dropout (dropout_rng given) draws each part's masks
    from fold_in(dropout_rng, part): the same distribution, other draws than the whole batch's.
    """
    if parts < 1:
        raise ValueError(f"parts={parts}: expected >= 1")

    def run(params, config, z, logsnr, cond=None, frame_mask=None, *, dropout_rng=None):
        batch = z.shape[0]
        if batch % parts:
            raise ValueError(f"a batch of {batch} does not split into {parts} equal parts")
        n = batch // parts

        def part(tree, i):  # the leaves with a batch axis (a shared scalar λ stays whole)
            return jax.tree_util.tree_map(
                lambda a: a[i * n:(i + 1) * n] if jnp.ndim(a) and jnp.shape(a)[0] == batch else a, tree)

        outs = [apply(params, config, z[i * n:(i + 1) * n], part(logsnr, i), part(cond, i), part(frame_mask, i),
                      dropout_rng=None if dropout_rng is None else jax.random.fold_in(dropout_rng, i))
                for i in range(parts)]
        return jnp.concatenate(outs, axis=0)

    return run


def _fast_apply(params, config, z, logsnr, cond=None, frame_mask=None, *, dropout_rng=None,
                compute_dtype=None, remat=False):
    from vdm_fast.network import from_params

    model = from_params(config, params, dtype=None, compute_dtype=compute_dtype, remat=remat)
    return model(z, logsnr, cond, frame_mask, key=dropout_rng)


class Denoiser(eqx.Module):
    """x̂_θ(z_t, λ_t, c) = x from the network's prediction (ε: (z − σ ε̂)/α; v: α z − σ v̂).

    **Arguments** (fields):
    - `network`: the U-Net of either backend, `network(z, logsnr, cond, frame_mask)`.
    - `target`: its parameterisation, 'eps' or 'v'.
    - `cond`: the condition used when a call passes none (None: the null condition).
    - `clip_x`: clip x̂ to the data range [−1, 1] (static thresholding).

    Called as `denoiser(z, logsnr, cond=None)` — the samplers' `denoise_fn(z, logsnr)` — it
    computes in float32 and returns float32 [B, T, H, W, C]. Being an `eqx.Module`, its weights
    are traced arguments: a compiled sampler compiles once per configuration, not per call.
    """

    network: Any
    target: str = eqx.field(static=True)
    cond: Any = None
    clip_x: bool = eqx.field(static=True, default=False)

    def __call__(self, z, logsnr, cond=None):
        z = jnp.asarray(z, jnp.float32)
        logsnr = jnp.asarray(logsnr, jnp.float32)
        cond = self.cond if cond is None else cond
        pred = jnp.asarray(self.network(z, logsnr, cond), jnp.float32)
        x = x_from_prediction(z, pred, logsnr, self.target)
        return jnp.clip(x, -1.0, 1.0) if self.clip_x else x
