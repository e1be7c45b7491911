"""Elementary layers of the 3D U-Net as Equinox modules: twins of `vdm_ref.network.layers`.

Each module holds its parameters as fields, is built from / turned back into the shared
parameter dict (`from_params` / `to_params`), and computes in the dtype of its input (weights
are cast to it, so float32 parameters can run in bfloat16). Each `vdm_ref.network.layers`
function has a twin here with its signature, e.g. `dense(params, x)`, which builds the module
from the dict and calls it.

`per_channel`, `space_to_depth` and `depth_to_space` are vdm_ref's own array-API functions (pure
reshapes and transposes, the same under jit), re-exported rather than written twice.

Every block of the U-Net is called as `block(h, ctx, *, key=None)`: h the activations
[B, T, H, W, C], ctx a `BlockContext` (the conditioning embedding and the joint image-video frame
mask), key the block's dropout key (None in evaluation); a block reads what it needs and ignores
the rest.

Convolutions are 1x3x3: the frames are folded into the batch and `jax.lax.conv_general_dilated`
runs a channels-last 2-D convolution (`NHWC`, `HWIO`) over each frame. Differentiated on a CPU,
a convolution's input is first made a buffer of its own (`materialised`).
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from vdm_ref.network.layers import depth_to_space, per_channel, space_to_depth

__all__ = [
    "BlockContext", "Conv1x3x3", "Dense", "Downsample", "GroupNorm", "Upsample", "conv_1x3x3",
    "dense", "depth_to_space",
    "downsample", "dropout", "dropout_keep", "group_norm", "per_channel", "silu",
    "space_to_depth", "upsample",
]


def _bias(b, y):
    """b: [C] broadcast explicitly against y: [..., C] and cast to y's dtype."""
    return jnp.reshape(b.astype(y.dtype), (1,) * (y.ndim - 1) + (b.shape[0],))


class Dense(eqx.Module):
    """y = x W + b over the last axis (also the 1x1 convolution). Twin of `layers.dense`."""

    weight: Float[Array, "cin cout"]
    bias: Float[Array, " cout"] | None

    @classmethod
    def from_params(cls, params: dict) -> Dense:
        """From {"w": [Cin, Cout], "b": [Cout]} ("b" optional)."""
        return cls(jnp.asarray(params["w"]), None if "b" not in params else jnp.asarray(params["b"]))

    def to_params(self) -> dict:
        return {"w": self.weight} if self.bias is None else {"w": self.weight, "b": self.bias}

    def __call__(self, x: Float[Array, "... cin"]) -> Float[Array, "... cout"]:
        y = x @ self.weight.astype(x.dtype)
        return y if self.bias is None else y + _bias(self.bias, y)


#: `materialised` makes a differentiated convolution's input a buffer of its own on the CPU
#: (tests and benchmarks switch it off to compare).
MATERIALISE_ON_CPU = True


@jax.custom_vjp
def materialised(x, ref):
    """x, as one buffer of its own when differentiated on the CPU (the identity otherwise).

    XLA's CPU backend computes a convolution's weight gradient from its input in a [C, H, W, N]
    layout, and fuses the input's element-wise producer (GroupNorm and SiLU) into that layout
    transpose: it recomputes them reading 3-5 arrays in transposed order, far slower than
    transposing the one input. Under differentiation the input goes through a `lax.cond` whose
    branches both return it: XLA fuses nothing across a conditional, so the transpose reads the
    materialised input (docs/benchmarks.md "The convolution input as a buffer": the mnist-small
    step x0.93). The predicate is read off `ref`, a parameter every device holds (the
    convolution's kernel), not off x, whose shards would need a collective to agree on it.
    The cotangent passes through unchanged; not differentiated, this is the identity.
    """
    return x


def _materialised_fwd(x, ref):
    if not MATERIALISE_ON_CPU or jax.default_backend() != "cpu":
        return x, None
    r = jax.lax.stop_gradient(ref).reshape(-1)[0]
    return jax.lax.cond(r == r, lambda v: v, lambda v: v + 0, x), None


materialised.defvjp(_materialised_fwd, lambda _, g: (g, None))


class Conv1x3x3(eqx.Module):
    """Space-only 3D convolution, zero padding 1, spatial stride 1 or 2 (2 = downsampling).

    Twin of `layers.conv_1x3x3` / `layers.downsample`: [B, T, H, W, Cin] -> [B, T, H/s, W/s, Cout].
    """

    weight: Float[Array, "1 3 3 cin cout"]
    bias: Float[Array, " cout"]
    stride: int = eqx.field(static=True, default=1)

    @classmethod
    def from_params(cls, params: dict, *, stride: int = 1) -> Conv1x3x3:
        """From {"w": [1, 3, 3, Cin, Cout], "b": [Cout]}."""
        return cls(jnp.asarray(params["w"]), jnp.asarray(params["b"]), stride)

    def to_params(self) -> dict:
        return {"w": self.weight, "b": self.bias}

    def __call__(self, x: Float[Array, "b t h w cin"]) -> Float[Array, "b t h2 w2 cout"]:
        b, t, h, w, c = x.shape
        x = materialised(x, self.weight)
        y = jax.lax.conv_general_dilated(
            x.reshape(b * t, h, w, c), self.weight[0].astype(x.dtype), (self.stride, self.stride),
            ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
        y = y.reshape((b, t) + y.shape[1:])
        return y + _bias(self.bias, y)


class GroupNorm(eqx.Module):
    """Per-frame GroupNorm (statistics over H, W and a group's channels), computed in float32.

    Twin of `layers.group_norm`.
    """

    scale: Float[Array, " c"]
    offset: Float[Array, " c"]
    groups: int = eqx.field(static=True)
    eps: float = eqx.field(static=True, default=1e-6)

    @classmethod
    def from_params(cls, params: dict, *, groups: int, eps: float = 1e-6) -> GroupNorm:
        """From {"scale": [C], "offset": [C]}."""
        return cls(jnp.asarray(params["scale"]), jnp.asarray(params["offset"]), groups, eps)

    def to_params(self) -> dict:
        return {"scale": self.scale, "offset": self.offset}

    def __call__(self, x: Float[Array, "b t h w c"]) -> Float[Array, "b t h w c"]:
        xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        mean = self._group_mean(xf)
        centred = xf - mean
        var = self._group_mean(jnp.square(centred))
        xn = (centred * jax.lax.rsqrt(var + self.eps)).astype(x.dtype)
        return xn * _bias(self.scale, xn) + _bias(self.offset, xn)

    def _group_mean(self, a):
        """The mean over H, W and each group's channels, broadcast back to every channel:
        [B, T, H, W, C] -> [B, T, 1, 1, C]. Reduced over H, W per channel first (channels stay
        innermost), then over the group: the same value as one mean over the group's elements,
        faster on the CPU than reducing a [.., H·W, groups, C/groups] view (docs/benchmarks.md)."""
        b, t, _, _, c = a.shape
        per_channel = jnp.mean(a, axis=(2, 3)).reshape(b, t, self.groups, c // self.groups)
        per_group = jnp.mean(per_channel, axis=-1, keepdims=True)
        return jnp.broadcast_to(per_group, per_channel.shape).reshape(b, t, 1, 1, c)


class BlockContext(NamedTuple):
    """What a U-Net block may read besides its input h (module docstring):

    - emb: the conditioning embedding e(λ, c) [B, E] (`embedding.ConditioningEmbedding`), in
      the compute dtype;
    - frame_mask: bool [B, T], True marks an independent image frame of a joint image-video
      batch (None: all frames are video frames).
    """

    emb: Float[Array, "b e"]
    frame_mask: Bool[Array, "b t"] | None = None


class Downsample(eqx.Module):
    """The 1x3x3 convolution with spatial stride 2: [B, T, H, W, C] -> [B, T, H/2, W/2, C'].

    Twin of `layers.downsample`; a U-Net block (reads neither ctx nor key).
    """

    conv: Conv1x3x3

    @classmethod
    def from_params(cls, params: dict) -> Downsample:
        """From {"w": [1, 3, 3, Cin, Cout], "b": [Cout]}."""
        return cls(Conv1x3x3.from_params(params, stride=2))

    def to_params(self) -> dict:
        return self.conv.to_params()

    def __call__(self, x: Float[Array, "b t h w c"], ctx: BlockContext | None = None, *,
                 key: PRNGKeyArray | None = None) -> Float[Array, "b t h2 w2 c2"]:
        return self.conv(x)


class Upsample(eqx.Module):
    """Nearest-neighbour ×2 in H and W, then a 1x3x3 convolution. Twin of `layers.upsample`;
    a U-Net block (reads neither ctx nor key)."""

    conv: Conv1x3x3

    @classmethod
    def from_params(cls, params: dict) -> Upsample:
        """From {"w": [1, 3, 3, Cin, Cout], "b": [Cout]}."""
        return cls(Conv1x3x3.from_params(params))

    def to_params(self) -> dict:
        return self.conv.to_params()

    def __call__(self, x: Float[Array, "b t h w c"], ctx: BlockContext | None = None, *,
                 key: PRNGKeyArray | None = None) -> Float[Array, "b t h2 w2 c"]:
        b, t, h, w, c = x.shape
        x = jnp.broadcast_to(x[:, :, :, None, :, None, :], (b, t, h, 2, w, 2, c))
        return self.conv(x.reshape(b, t, 2 * h, 2 * w, c))


def dense(params, x):
    """Twin of `vdm_ref.network.layers.dense`: `Dense.from_params(params)(x)`."""
    return Dense.from_params(params)(x)


def conv_1x3x3(params, x, *, stride=1):
    """Twin of `vdm_ref.network.layers.conv_1x3x3`."""
    return Conv1x3x3.from_params(params, stride=stride)(x)


def group_norm(params, x, *, groups, eps=1e-6):
    """Twin of `vdm_ref.network.layers.group_norm`."""
    return GroupNorm.from_params(params, groups=groups, eps=eps)(x)


def silu(x):
    """SiLU(x) = x · sigmoid(x) (`jax.nn.silu`)."""
    return jax.nn.silu(x)


def dropout_keep(rng: PRNGKeyArray, rate, shape) -> Bool[Array, "*shape"]:
    """Keep mask ~ Bernoulli(1 − rate): `jax.random.bernoulli(rng, float32(1 − rate), shape)`.

    Twin of `vdm_ref.network.layers.dropout_keep`, which draws the same mask from the same JAX
    key (vdm_fast takes JAX keys only, not numpy Generators).
    """
    return jax.random.bernoulli(rng, np.float32(1.0 - rate), shape)


def dropout(x, rate, rng=None):
    """Inverted dropout x · m / (1 − rate); rng None or rate 0 is the identity (evaluation)."""
    if rng is None or rate == 0.0:
        return x
    return jnp.where(dropout_keep(rng, rate, x.shape), x / (1.0 - rate), jnp.zeros_like(x))


def downsample(params, x):
    """Twin of `vdm_ref.network.layers.downsample`: the 1x3x3 convolution with stride 2."""
    return Downsample.from_params(params)(x)


def upsample(params, x):
    """Twin of `vdm_ref.network.layers.upsample`."""
    return Upsample.from_params(params)(x)

