"""The factorised space-time 3D U-Net as an Equinox module: twin of `vdm_ref.network.unet`.

    model = from_params(config, params)                 # shared dict -> UNet (float32)
    pred = model(z, logsnr, cond, frame_mask, key=None)
    params = to_params(model)                           # UNet -> shared dict

`UNet` holds one module per block of `vdm_ref.network.blocks(config)` (the one definition of
the architecture) and only wires them: skips, the embedding, the dropout key of block i
(`jax.random.fold_in(key, i)`, as vdm_ref draws it). Every block is called the same way,
`block(h, ctx, *, key)` with ctx a `layers.BlockContext` (embedding, frame mask). Static
settings live in module fields:

- `compute_dtype`: None (the parameters' dtype) or e.g. `jnp.bfloat16`: activations and
  weights are cast to it inside each layer while parameters stay float32; GroupNorm statistics,
  softmax and the conditioning embedding stay in float32; the output has z's dtype.
- `remat`: rematerialise every block in the backward pass (`vdm_fast.network.remat`: only each
  block's inputs are kept, its forward recomputed inside its backward), trading compute for
  activation memory.
- `implementation`: the attention kernel, None = per platform (see `attention`).

`init`, `apply`, `check_inputs`, `blocks`, `param_shapes`, `count_params`, `flops` keep
vdm_ref's signatures; the shape-level ones are vdm_ref's own.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from vdm_ref.configs import UNetConfig
from vdm_ref.network import init as _ref_init
from vdm_ref.network.unet import Block, blocks, check_inputs, count_params, flops, param_shapes

from .attention import SpatialAttention, TemporalAttention
from .embedding import ConditioningEmbedding
from .layers import (
    BlockContext,
    Conv1x3x3,
    Downsample,
    GroupNorm,
    Upsample,
    depth_to_space,
    space_to_depth,
)
from .residual import ResidualBlock
from .remat import remat

__all__ = [
    "Block", "UNet", "apply", "blocks", "check_inputs", "count_params", "flops", "from_params",
    "init", "param_shapes", "to_params",
]


class _SpatialBlock(eqx.Module):
    """`SpatialAttention` called as a U-Net block, `block(h, ctx, *, key)` (reads neither)."""

    attention: SpatialAttention

    def __call__(self, h, ctx: BlockContext, *, key=None):
        return self.attention(h)

    def to_params(self) -> dict:
        return self.attention.to_params()


class _TemporalBlock(eqx.Module):
    """`TemporalAttention` called as a U-Net block, `block(h, ctx, *, key)` (reads ctx.frame_mask)."""

    attention: TemporalAttention

    def __call__(self, h, ctx: BlockContext, *, key=None):
        return self.attention(h, ctx.frame_mask)

    def to_params(self) -> dict:
        return self.attention.to_params()


def _block_module(blk: Block, p: dict, config: UNetConfig, implementation):
    g = config.norm_groups
    if blk.kind == "res":
        return ResidualBlock.from_params(p, groups=g, dropout_rate=config.dropout)
    if blk.kind == "spatial_attn":
        return _SpatialBlock(SpatialAttention.from_params(p, head_dim=config.head_dim, groups=g,
                                                          implementation=implementation))
    if blk.kind == "temporal_attn":
        return _TemporalBlock(TemporalAttention.from_params(p, head_dim=config.head_dim, groups=g,
                                                            implementation=implementation))
    if blk.kind == "down":
        return Downsample.from_params(p)
    return Upsample.from_params(p)


class UNet(eqx.Module):
    """x̂_θ's network ε̂/v̂(z_t, c, λ_t) (Sec. 3, Fig. 1); see the module docstring."""

    emb: ConditioningEmbedding
    conv_in: Conv1x3x3
    blocks: tuple[eqx.Module, ...]
    out_norm: GroupNorm
    out_conv: Conv1x3x3
    config: UNetConfig = eqx.field(static=True)
    specs: tuple[Block, ...] = eqx.field(static=True)
    compute_dtype: str | None = eqx.field(static=True, default=None)
    remat: bool = eqx.field(static=True, default=False)
    implementation: str | None = eqx.field(static=True, default=None)

    def __call__(self, z: Float[Array, "b t h w c"], logsnr: Float[Array, " b"],
                 cond: Float[Array, "b k"] | tuple[Float[Array, "b l d"], Bool[Array, "b l"]]
                 | None = None, frame_mask: Bool[Array, "b t"] | None = None, *,
                 key: PRNGKeyArray | None = None) -> Float[Array, "b t h w c_out"]:
        """z: z_t [B, T, H, W, C]; logsnr: λ_t [B]; cond / frame_mask as `vdm_ref.network.apply`;
        key: the dropout key (None in evaluation). Returns the prediction in z's dtype."""
        check_inputs(self.config, z, logsnr, cond, frame_mask)
        dtype = z.dtype if self.compute_dtype is None else jnp.dtype(self.compute_dtype)
        ctx = BlockContext(self.emb(logsnr, cond).astype(dtype),
                           None if frame_mask is None else jnp.asarray(frame_mask, dtype=bool))
        call = remat(_call_block) if self.remat else _call_block
        h = self.conv_in(space_to_depth(z.astype(dtype), self.config.patch_size))
        skips = [h]
        for index, (spec, block) in enumerate(zip(self.specs, self.blocks)):
            if spec.concat_skip:
                h = jnp.concatenate([h, skips.pop()], axis=-1)
            block_key = None if key is None else jax.random.fold_in(key, index)
            h = call(block, h, ctx, block_key)
            if spec.save_skip:
                skips.append(h)
        out = self.out_conv(jax.nn.silu(self.out_norm(h)))
        return depth_to_space(out, self.config.patch_size).astype(z.dtype)


def _call_block(block, h, ctx, key):
    """block(h, ctx, key=key), as a function of the block so `remat` can wrap it."""
    return block(h, ctx, key=key)


def from_params(config: UNetConfig, params: dict, *, dtype=jnp.float32, compute_dtype=None,
                remat: bool = False, implementation: str | None = None) -> UNet:
    """The `UNet` holding `params` (the shared layout of `vdm_ref.network.init`).

    dtype: the parameters' dtype in the module (None keeps each array's own dtype);
    compute_dtype, remat, implementation: see the module docstring.
    """
    if dtype is not None:
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=dtype), params)
    specs = tuple(blocks(config))
    missing = [s.name for s in specs if s.name not in params]
    if missing:
        raise ValueError(f"params lack blocks {missing[:5]} of the config's U-Net: expected the "
                         "layout of vdm_ref.network.init(config, key) for this config")
    return UNet(
        ConditioningEmbedding.from_params(params["emb"], config),
        Conv1x3x3.from_params(params["conv_in"]),
        tuple(_block_module(s, params[s.name], config, implementation) for s in specs),
        GroupNorm.from_params(params["out_norm"], groups=config.norm_groups),
        Conv1x3x3.from_params(params["out_conv"]),
        config, specs, None if compute_dtype is None else jnp.dtype(compute_dtype).name, remat,
        implementation)


def to_params(model: UNet) -> dict:
    """The shared parameter dict of a `UNet` (JAX arrays; `np.asarray` them to save)."""
    p = {"emb": model.emb.to_params(), "conv_in": model.conv_in.to_params()}
    p.update({s.name: b.to_params() for s, b in zip(model.specs, model.blocks)})
    p["out_norm"] = model.out_norm.to_params()
    p["out_conv"] = model.out_conv.to_params()
    return p


def init(config: UNetConfig, key) -> dict:
    """Twin of `vdm_ref.network.init`: the same draws (key: an int seed or numpy Generator),
    as float32 JAX arrays in the shared layout."""
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=jnp.float32),
                                  _ref_init(config, key))


def apply(params, config: UNetConfig, z, logsnr, cond=None, frame_mask=None, *, dropout_rng=None):
    """Twin of `vdm_ref.network.apply`: `from_params(config, params, dtype=None)(...)`.

    Computes in z's dtype with the parameters as given; dropout_rng is a JAX key (the same key
    gives vdm_ref's dropout masks) or None. Jit-friendly: wrap in `jax.jit` with `config`
    static (e.g. via `functools.partial`).
    """
    model = from_params(config, params, dtype=None)
    return model(jnp.asarray(z), jnp.asarray(logsnr), cond, frame_mask, key=dropout_rng)
