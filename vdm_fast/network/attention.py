"""Attention modules of the 3D U-Net on `jax.nn.dot_product_attention`: twins of
`vdm_ref.network.attention`.

- `SpatialAttention`: over the H·W positions of each frame.
- `TemporalAttention`: over the T frames at each position, with the learned relative position
  bias (`relative_position_bias`, reused from vdm_ref: a gather under jit) and the joint
  image-video mask (`temporal_attention_mask`, reused likewise).
- `AttentionPooling`: a caption's tokens to one vector (Sec. 4.3).

The attention kernel is chosen per platform by `attention_implementation`: cuDNN's fused
attention on a GPU when the inputs are bfloat16/float16 and head_dim is a multiple of 8 and at
most 128, XLA otherwise; a cuDNN failure at trace time falls back to XLA with a warning
instead of crashing. A module's `implementation` field ('xla', 'cudnn' or None = automatic)
overrides the choice.
"""

from __future__ import annotations

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from vdm_ref.network.attention import relative_position_bias, temporal_attention_mask

from .layers import Dense, GroupNorm

__all__ = [
    "AttentionPooling", "SpatialAttention", "TemporalAttention", "attention_implementation",
    "attention_pooling", "dot_product_attention", "relative_position_bias", "spatial_attention",
    "temporal_attention", "temporal_attention_mask",
]

_FUSED_DTYPES = (jnp.bfloat16, jnp.float16)


def attention_implementation(dtype, head_dim: int) -> str:
    """'cudnn' on a GPU for bfloat16/float16 with head_dim % 8 == 0 and head_dim <= 128, else 'xla'."""
    fused = (jax.default_backend() == "gpu" and jnp.dtype(dtype) in map(jnp.dtype, _FUSED_DTYPES)
             and head_dim % 8 == 0 and head_dim <= 128)
    return "cudnn" if fused else "xla"


def _attend(q, k, v, bias=None, mask=None, implementation=None):
    impl = implementation or attention_implementation(q.dtype, q.shape[-1])
    if bias is not None:
        bias = bias.astype(q.dtype)
    if impl == "cudnn":
        try:
            return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask,
                                                implementation="cudnn")
        # cuDNN absent or refusing these shapes/dtypes/shardings: XLA computes the same thing
        except (RuntimeError, ValueError, NotImplementedError, TypeError) as err:
            warnings.warn(f"cuDNN attention unavailable ({type(err).__name__}: {err}); using XLA",
                          RuntimeWarning, stacklevel=2)
    return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, implementation="xla")


def dot_product_attention(q, k, v, bias=None, mask=None):
    """Twin of `vdm_ref.network.attention.dot_product_attention` (same shapes and masking):
    `jax.nn.dot_product_attention` with the implementation of `attention_implementation`."""
    return _attend(q, k, v, bias, mask)


def _self_attention(block, y, bias=None, mask=None):
    """Out(Attention(y Wq, y Wk, y Wv)) for y: [N, S, C], heads of block.head_dim channels."""
    n, s, c = y.shape
    heads = c // block.head_dim
    q, k, v = (f(y).reshape(n, s, heads, block.head_dim) for f in (block.q, block.k, block.v))
    o = _attend(q, k, v, bias, mask, block.implementation)
    return block.out(o.reshape(n, s, c))


def _attention_params(block) -> dict:
    return {"norm": block.norm.to_params(), **{n: getattr(block, n).to_params()
                                               for n in ("q", "k", "v", "out")}}


def _attention_fields(params, groups):
    return (GroupNorm.from_params(params["norm"], groups=groups),
            *(Dense.from_params(params[n]) for n in ("q", "k", "v", "out")))


class SpatialAttention(eqx.Module):
    """Spatial self-attention block x + Out(Attn(GN(x))) (Sec. 3), frames as a batch axis.

    Twin of `vdm_ref.network.attention.spatial_attention`.
    """

    norm: GroupNorm
    q: Dense
    k: Dense
    v: Dense
    out: Dense
    head_dim: int = eqx.field(static=True)
    implementation: str | None = eqx.field(static=True, default=None)

    @classmethod
    def from_params(cls, params: dict, *, head_dim: int, groups: int,
                    implementation: str | None = None) -> SpatialAttention:
        """From {"norm", "q", "k", "v", "out"}."""
        return cls(*_attention_fields(params, groups), head_dim, implementation)

    def to_params(self) -> dict:
        return _attention_params(self)

    def __call__(self, x: Float[Array, "b t h w c"]) -> Float[Array, "b t h w c"]:
        b, t, h, w, c = x.shape
        y = _self_attention(self, self.norm(x).reshape(b * t, h * w, c))
        return x + y.reshape(x.shape)


class TemporalAttention(eqx.Module):
    """Temporal self-attention block x + Out(Attn(GN(x))) (Sec. 3) over frames, space as a
    batch axis, with the relative position bias and the joint image-video mask.

    Twin of `vdm_ref.network.attention.temporal_attention`.
    """

    norm: GroupNorm
    q: Dense
    k: Dense
    v: Dense
    out: Dense
    rel_bias: Float[Array, "heads width"]
    head_dim: int = eqx.field(static=True)
    implementation: str | None = eqx.field(static=True, default=None)

    @classmethod
    def from_params(cls, params: dict, *, head_dim: int, groups: int,
                    implementation: str | None = None) -> TemporalAttention:
        """From {"norm", "q", "k", "v", "out", "rel_bias": [heads, 2D + 1]}."""
        return cls(*_attention_fields(params, groups), jnp.asarray(params["rel_bias"]),
                   head_dim, implementation)

    def to_params(self) -> dict:
        return {**_attention_params(self), "rel_bias": self.rel_bias}

    def __call__(self, x: Float[Array, "b t h w c"],
                 frame_mask: Bool[Array, "b t"] | None = None) -> Float[Array, "b t h w c"]:
        b, t, h, w, c = x.shape
        y = self.norm(x).transpose(0, 2, 3, 1, 4).reshape(b * h * w, t, c)
        bias = relative_position_bias(self.rel_bias, t)[None]  # [1, heads, t, t]
        mask = None
        if frame_mask is not None:
            keep = temporal_attention_mask(jnp.asarray(frame_mask))[:, None, None]  # [b,1,1,t,t]
            mask = jnp.broadcast_to(keep, (b, h * w, 1, t, t)).reshape(b * h * w, 1, t, t)
        y = _self_attention(self, y, bias, mask)
        return x + y.reshape(b, h, w, t, c).transpose(0, 3, 1, 2, 4)


class AttentionPooling(eqx.Module):
    """Attention pooling of caption tokens (Sec. 4.3): the masked mean token queries the valid
    tokens; bias-free projections, an all-padded caption pools to 0. Twin of
    `vdm_ref.network.attention.attention_pooling`."""

    q: Dense
    k: Dense
    v: Dense
    out: Dense
    head_dim: int = eqx.field(static=True)

    @classmethod
    def from_params(cls, params: dict, *, head_dim: int) -> AttentionPooling:
        """From {"q", "k", "v": {"w": [D_text, E]}, "out": {"w": [E, E]}}."""
        return cls(*(Dense.from_params(params[n]) for n in ("q", "k", "v", "out")), head_dim)

    def to_params(self) -> dict:
        return {n: getattr(self, n).to_params() for n in ("q", "k", "v", "out")}

    def __call__(self, tokens: Float[Array, "b l d"], token_mask: Bool[Array, "b l"]
                 ) -> Float[Array, "b e"]:
        b, l, _ = tokens.shape
        m = token_mask.astype(tokens.dtype)
        count = jnp.maximum(jnp.sum(m, axis=1), 1.0)
        mean = jnp.sum(tokens * m[:, :, None], axis=1) / count[:, None]
        e = self.q.weight.shape[1]
        heads = e // self.head_dim
        q = self.q(mean).reshape(b, 1, heads, self.head_dim)
        k = self.k(tokens).reshape(b, l, heads, self.head_dim)
        v = self.v(tokens).reshape(b, l, heads, self.head_dim)
        o = _attend(q, k, v, mask=token_mask.reshape(b, 1, 1, l), implementation="xla")
        has_token = jnp.any(token_mask, axis=1).astype(o.dtype)  # all padded -> 0
        return self.out(o.reshape(b, e) * has_token[:, None])


def spatial_attention(params, x, *, head_dim, groups):
    """Twin of `vdm_ref.network.attention.spatial_attention`."""
    return SpatialAttention.from_params(params, head_dim=head_dim, groups=groups)(x)


def temporal_attention(params, x, frame_mask=None, *, head_dim, groups):
    """Twin of `vdm_ref.network.attention.temporal_attention`."""
    return TemporalAttention.from_params(params, head_dim=head_dim, groups=groups)(x, frame_mask)


def attention_pooling(params, tokens, token_mask, *, head_dim):
    """Twin of `vdm_ref.network.attention.attention_pooling`."""
    return AttentionPooling.from_params(params, head_dim=head_dim)(tokens, token_mask)
