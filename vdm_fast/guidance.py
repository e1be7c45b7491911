"""Guidance (Sec. 2 and 3.1), traceable inside the compiled samplers: classifier-free guidance
(Eq. 6) and reconstruction guidance (Eq. 7 temporal, Eq. 8 spatial, or both as in Fig. 2).

Twin of `vdm_ref.guidance`. The guided denoisers are `eqx.Module`s (pytree-callables): the model,
the observation and the weights w, w_r are their fields, so inside a compiled sampler they are
traced arguments — changing w or w_r does not recompile.

The reference takes a `denoise_vjp(z, λ) -> (x̂, vjp)`. Here the vector-Jacobian product is built
inside the compiled program by `jax.vjp` from the model's plain `denoise_fn(z, λ) -> x̂`, so
`reconstruction_guided_denoiser` (and `conditioning.sample_conditional`) take either:
- a plain denoise_fn (the usual case: the network), or `with_jax_vjp(denoise_fn)`;
- a `DenoiseVJP(denoise_vjp)`, marking a callable that returns (x̂, vjp) itself (e.g. the
  Gaussian oracle's exact `denoise_vjp`), used as given.
"""

import functools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from vdm_ref import conditioning as _ref_conditioning
from vdm_ref import guidance as _ref

from .schedule import DTYPE, _float32


def _optional_float32(a):
    return None if a is None else jnp.asarray(a, dtype=jnp.float32)


class Observation(eqx.Module):
    """What conditional sampling conditions on (arrays stored as float32 `jax.Array`s).

    Twin of `vdm_ref.conditioning.Observation`, defined here because the guided denoisers read it
    (`vdm_fast.conditioning` re-exports it).

    - x: [B, T, H, W, C] full-resolution values, read where mask = 1 (anything elsewhere).
    - mask: 1 for known entries, same rank as x, broadcastable to it (e.g. [1, T, 1, 1, 1]).
    - low_res: [B, T, H/k, W/k, C] low-resolution video yᵃ (Eq. 8), read where low_res_mask = 1.
    - low_res_mask: [1, T, 1, 1, 1] (or broadcastable) frames that have a low-res observation.
    - factor: k, the spatial downsampling factor of low_res (static).
    """

    x: jax.Array | None = eqx.field(default=None, converter=_optional_float32)
    mask: jax.Array | None = eqx.field(default=None, converter=_optional_float32)
    low_res: jax.Array | None = eqx.field(default=None, converter=_optional_float32)
    low_res_mask: jax.Array | None = eqx.field(default=None, converter=_optional_float32)
    factor: int = eqx.field(default=1, static=True)

    def __check_init__(self):
        # the reference's checks (both parts of x/mask and low_res/low_res_mask, something
        # observed, mask of x's rank) run in its constructor
        _ref_conditioning.Observation(self.x, self.mask, self.low_res, self.low_res_mask, self.factor)
        if int(self.factor) != self.factor or self.factor < 1:
            raise ValueError(f"factor must be a positive integer, got {self.factor!r}")

    def known_mask(self, z):
        """m: 1 where z's entries are known at full resolution (0 everywhere if none are)."""
        return jnp.zeros_like(z) if self.mask is None else self.mask * jnp.ones_like(z)

    def update_mask(self, z):
        """1 − m: the entries the sampler generates (the b part)."""
        return 1 - self.known_mask(z)


def as_observation(observation):
    """A `vdm_fast` Observation from a `vdm_ref` one (or the fast one unchanged)."""
    if isinstance(observation, Observation):
        return observation
    if isinstance(observation, _ref_conditioning.Observation):
        return Observation(observation.x, observation.mask, observation.low_res,
                           observation.low_res_mask, observation.factor)
    raise TypeError(f"expected an Observation, got {type(observation).__name__}")


@jax.jit
def classifier_free_guidance(eps_cond, eps_uncond, w):
    """ε̃_θ(z_t, c) = (1 + w) ε_θ(z_t, c) − w ε_θ(z_t)  (Eq. 6), float32; w traced.

    Since x̂ = (z − σ ε̂)/α is affine in ε̂, the same combination applies to x̂ predictions.
    """
    return _ref.classifier_free_guidance(*_float32(eps_cond, eps_uncond, w))


def _batchable(cond, null_cond, batch):
    """True if cond and null_cond are pytrees of arrays of one structure with leading axis B."""
    leaves_c, tree_c = jax.tree_util.tree_flatten(cond)
    leaves_n, tree_n = jax.tree_util.tree_flatten(null_cond)
    return (tree_c == tree_n and len(leaves_c) > 0
            and all(eqx.is_array(a) and eqx.is_array(b) and a.ndim >= 1 and a.shape == b.shape
                    and a.dtype == b.dtype and a.shape[0] == batch
                    for a, b in zip(leaves_c, leaves_n)))


class ClassifierFreeDenoiser(eqx.Module):
    """denoise_fn(z, λ) = (1 + w) x̂(z, c) − w x̂(z, c_null)  (Eq. 6 in x-space), a pytree-callable.

    When c and c_null are arrays (or pytrees of arrays) of one shape with leading axis B, both
    predictions come from one network evaluation on the batch [z; z] with [c; c_null] (twice the
    batch, half the calls); otherwise from two calls.
    """

    denoise_fn: Callable
    cond: Any
    null_cond: Any
    w: jax.Array

    def __call__(self, z, logsnr):
        if _batchable(self.cond, self.null_cond, z.shape[0]):
            both = jax.tree_util.tree_map(lambda c, n: jnp.concatenate([c, n]), self.cond, self.null_cond)
            x2 = self.denoise_fn(jnp.concatenate([z, z]), jnp.concatenate([logsnr, logsnr]), both)
            x_cond, x_uncond = jnp.split(jnp.asarray(x2, dtype=DTYPE), 2)
        else:
            x_cond = jnp.asarray(self.denoise_fn(z, logsnr, self.cond), dtype=DTYPE)
            x_uncond = jnp.asarray(self.denoise_fn(z, logsnr, self.null_cond), dtype=DTYPE)
        return (1.0 + self.w) * x_cond - self.w * x_uncond


def classifier_free_denoiser(denoise_fn, cond, null_cond, w):
    """A denoise_fn(z, λ) applying Eq. 6 to denoise_fn(z, λ, c): (1 + w) x̂(z, c) − w x̂(z, 0).

    Returns a `ClassifierFreeDenoiser` (an `eqx.Module`, so w is a traced float32 scalar inside
    a compiled sampler and changing it does not recompile); pass it to any sampler.
    """
    return ClassifierFreeDenoiser(denoise_fn, cond, null_cond, _float32(w))


@functools.partial(jax.jit, static_argnames=("factor",))
def downsample_area(x, factor):
    """D(x): mean over factor×factor spatial blocks, [B, T, H, W, C] -> [B, T, H/k, W/k, C] (float32)."""
    return _ref.downsample_area(_float32(x), factor)


@functools.partial(jax.jit, static_argnames=("factor",))
def downsample_area_transpose(g, factor):
    """Dᵀ(g), the adjoint of `downsample_area` (float32)."""
    return _ref.downsample_area_transpose(_float32(g), factor)


@eqx.filter_jit
def _reconstruction_loss(x_hat, observation):
    return _ref.reconstruction_loss(_float32(x_hat), observation)


@eqx.filter_jit
def _reconstruction_loss_cotangent(x_hat, observation):
    return _ref.reconstruction_loss_cotangent(_float32(x_hat), observation)


def reconstruction_loss(x_hat, observation):
    """||xᵃ − x̂ᵃ(z_t)||² + ||yᵃ − D(x̂(z_t))||², per example [B], float32 (the norms of Eq. 7, 8).

    observation: an `Observation` (a `vdm_ref` one is converted).
    """
    return _reconstruction_loss(x_hat, as_observation(observation))


def reconstruction_loss_cotangent(x_hat, observation):
    """∂/∂x̂ of `reconstruction_loss`: −2 m ⊙ (xᵃ − x̂) − 2 Dᵀ(m_lo ⊙ (yᵃ − D(x̂))), float32."""
    return _reconstruction_loss_cotangent(x_hat, as_observation(observation))


@jax.jit
def reconstruction_guided_x(x_hat, grad_z, logsnr, w_r, update_mask):
    """x̃_θ(z_t) = x̂_θ(z_t) − (w_r α_t / 2) ∇_{z_t} ||xᵃ − x̂ᵃ_θ(z_t)||²  (Eq. 7, Eq. 8), float32.

    Applied where update_mask = 1 (the b part). x_hat, grad_z: [B, ...]; logsnr: [B]; w_r traced.
    """
    return _ref.reconstruction_guided_x(*_float32(x_hat, grad_z, logsnr, w_r, update_mask))


class DenoiseVJP(eqx.Module):
    """Marks `fn(z, λ) -> (x̂, vjp)` as a denoise_vjp (the reference's protocol), used as given."""

    fn: Callable

    def __call__(self, z, logsnr):
        return self.fn(z, logsnr)


class JaxVJP(eqx.Module):
    """denoise_vjp(z, λ) -> (x̂, g ↦ (∂x̂/∂z)ᵀ g) built by `jax.vjp` from a plain denoise_fn."""

    denoise_fn: Callable

    def __call__(self, z, logsnr):
        def denoise(z_):
            x_hat = self.denoise_fn(z_, logsnr)
            if isinstance(x_hat, tuple):
                raise TypeError("the denoiser returned a tuple: it looks like a denoise_vjp(z, λ) -> "
                                "(x̂, vjp); wrap it as guidance.DenoiseVJP(fn), or pass the plain "
                                "denoise_fn(z, λ) -> x̂")
            return jnp.asarray(x_hat, dtype=z_.dtype)

        x_hat, vjp = jax.vjp(denoise, z)
        return x_hat, lambda g: vjp(g)[0]


def with_jax_vjp(denoise_fn):
    """denoise_vjp from a jax-traceable denoise_fn(z, λ), by `jax.vjp` (a `JaxVJP` module)."""
    return JaxVJP(denoise_fn)


def _as_denoise_vjp(denoiser):
    """A DenoiseVJP or JaxVJP as given; a plain denoise_fn wrapped in JaxVJP."""
    return denoiser if isinstance(denoiser, (DenoiseVJP, JaxVJP)) else JaxVJP(denoiser)


class ReconstructionGuidedDenoiser(eqx.Module):
    """denoise_fn(z, λ) -> x̃ of Eq. 7/8: x̂ from the model, then the reconstruction-guidance step.

    The backward pass through the model runs at every step, whatever w_r (traced, so changing
    it never recompiles). It is not put under a `lax.cond` on w_r ≠ 0: on XLA CPU a conditional
    around the model's backward pass made each guided step ≈ 5x slower than the plain vjp
    (mnist-small U-Net, 2 cores: 16 s vs 2.8 s per call). To skip the backward pass for the
    replacement method (w_r = 0), pass a `DenoiseVJP` whose vjp returns zeros.
    """

    denoise_vjp: DenoiseVJP | JaxVJP
    observation: Any
    w_r: jax.Array

    def __call__(self, z, logsnr):
        z, logsnr = _float32(z, logsnr)
        x_hat, vjp = self.denoise_vjp(z, logsnr)
        x_hat = jnp.asarray(x_hat, dtype=DTYPE)
        cotangent = _ref.reconstruction_loss_cotangent(x_hat, self.observation)
        grad_z = jnp.asarray(vjp(cotangent), dtype=DTYPE)
        return _ref.reconstruction_guided_x(x_hat, grad_z, logsnr, self.w_r,
                                            self.observation.update_mask(x_hat))


def reconstruction_guided_denoiser(denoise_vjp, observation, w_r):
    """denoise_fn(z, λ) -> x̃ of Eq. 7/8: x̂ from the model, then the reconstruction-guidance step.

    denoise_vjp: a plain denoise_fn(z, λ) -> x̂ (its vjp is built by `jax.vjp` inside the compiled
    program), `with_jax_vjp(denoise_fn)`, or a `DenoiseVJP` (module docstring). observation: a
    `vdm_fast` (or `vdm_ref`) `Observation`. w_r: guidance weight, a traced float32 scalar; w_r = 0
    gives the plain model, i.e. the replacement method once zᵃ is replaced.
    Returns a `ReconstructionGuidedDenoiser` (an `eqx.Module`).
    """
    return ReconstructionGuidedDenoiser(_as_denoise_vjp(denoise_vjp), as_observation(observation),
                                        _float32(w_r))
