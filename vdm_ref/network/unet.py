"""The factorised space-time 3D U-Net x̂_θ(z_t, c, λ_t) of Sec. 3 / Fig. 1: init and apply.

`blocks(config)` lists the network top to bottom (Fig. 1): for each level i = 0..K−1 of the
downsampling pass, N residual blocks (each followed, at the attention resolutions, by a spatial
and then a temporal attention block), then a downsampling block between levels; a middle of
residual, spatial attention, temporal attention, residual; then the upsampling pass, N + 1
residual blocks per level, each taking the concatenation of the running activation and a skip
saved on the way down, with attention as on the way down and an upsampling block between
levels. `init`, `apply`, `param_shapes` and `flops` all walk this one list, and vdm_fast builds
its modules from it, so the parameter layout has one definition. With `patch_size` p > 1 the
input is folded space-to-depth (p x p patches -> p²·C channels) before `conv_in` and unfolded
after `out_conv`; the levels then run at image_size / p, image_size / 2p, ...

Parameter layout (a nested dict with string keys; leaves are arrays):

    {"emb":      {"logsnr": dense, "mlp_1".."mlp_{L−1}": dense, "class": {"w"} | "text": {...}},
     "conv_in":  conv,                               # in_channels·p² -> channels
     "down_0_res_0": residual, "down_0_spatial_attn_0": attn, "down_0_temporal_attn_0": attn,
     ..., "down_0_downsample": conv, ..., "mid_res_0", "mid_spatial_attn",
     "mid_temporal_attn", "mid_res_1", "up_{K−1}_res_0", ..., "up_1_upsample", ...,
     "out_norm": norm, "out_conv": conv}             # channels -> out_channels·p²

with dense = {"w": [in, out], "b": [out]}, conv = {"w": [1, 3, 3, in, out], "b": [out]},
norm = {"scale": [C], "offset": [C]}; residual / attention blocks as documented in
`residual.residual_block`, `attention.spatial_attention`, `attention.temporal_attention`
(whose relative position parameters are "rel_bias": [heads, 2D + 1] for temporal_position
"bias", or "rel_key", "rel_value": [2D + 1, head_dim] for "shaw").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._array import namespace
from ..configs import UNetConfig
from .attention import spatial_attention, temporal_attention
from .embedding import conditioning_embedding
from .layers import conv_1x3x3, depth_to_space, downsample, group_norm, silu, space_to_depth, upsample
from .residual import residual_block

BLOCK_KINDS = ("res", "spatial_attn", "temporal_attn", "down", "up")


@dataclass(frozen=True)
class Block:
    """One block of the U-Net, in evaluation order.

    name: its key in the parameter dict; kind: one of BLOCK_KINDS; in_channels /
    out_channels: channels in (after any skip concatenation) and out; level: the resolution
    level it runs at (resolution image_size / 2**level; for "down"/"up" the level of its
    input); concat_skip: concatenate the last saved skip onto the input first; save_skip: save
    the output for the upsampling pass.
    """

    name: str
    kind: str
    in_channels: int
    out_channels: int
    level: int
    concat_skip: bool = False
    save_skip: bool = False


def blocks(config: UNetConfig) -> list[Block]:
    """The U-Net's blocks in evaluation order (Fig. 1; see the module docstring)."""
    out: list[Block] = []
    ch = config.channels
    skip_channels = [ch]  # conv_in's output is the first skip

    def attention(prefix, suffix, c, level):
        out.append(Block(f"{prefix}_spatial_attn{suffix}", "spatial_attn", c, c, level))
        out.append(Block(f"{prefix}_temporal_attn{suffix}", "temporal_attn", c, c, level))

    k = config.num_levels
    for i in range(k):
        for j in range(config.num_res_blocks):
            c = config.level_channels(i)
            out.append(Block(f"down_{i}_res_{j}", "res", ch, c, i))
            ch = c
            if config.has_attention(i):
                attention(f"down_{i}", f"_{j}", ch, i)
            out[-1] = _with_save(out[-1])
            skip_channels.append(ch)
        if i != k - 1:
            out.append(Block(f"down_{i}_downsample", "down", ch, ch, i, save_skip=True))
            skip_channels.append(ch)
    out.append(Block("mid_res_0", "res", ch, ch, k - 1))
    attention("mid", "", ch, k - 1)
    out.append(Block("mid_res_1", "res", ch, ch, k - 1))
    for i in reversed(range(k)):
        for j in range(config.num_res_blocks + 1):
            c = config.level_channels(i)
            out.append(Block(f"up_{i}_res_{j}", "res", ch + skip_channels.pop(), c, i,
                             concat_skip=True))
            ch = c
            if config.has_attention(i):
                attention(f"up_{i}", f"_{j}", ch, i)
        if i != 0:
            out.append(Block(f"up_{i}_upsample", "up", ch, ch, i))
    return out


def _with_save(block: Block) -> Block:
    return Block(block.name, block.kind, block.in_channels, block.out_channels, block.level,
                 block.concat_skip, True)


# ---------------------------------------------------------------------------------------------
# Parameter shapes and initialisation


@dataclass(frozen=True)
class _Leaf:
    """A parameter's shape and initialiser: N(0, 1/fan_in) ("normal"), or filled with 0 / 1."""

    shape: tuple
    init: str = "normal"
    fan_in: int = 1


def _dense(cin, cout, bias=True, zero=False):
    p = {"w": _Leaf((cin, cout), "zeros" if zero else "normal", cin)}
    if bias:
        p["b"] = _Leaf((cout,), "zeros")
    return p


def _conv(cin, cout, zero=False):
    return {"w": _Leaf((1, 3, 3, cin, cout), "zeros" if zero else "normal", 9 * cin),
            "b": _Leaf((cout,), "zeros")}


def _norm(c):
    return {"scale": _Leaf((c,), "ones"), "offset": _Leaf((c,), "zeros")}


def _residual(cin, cout, emb_dim):
    p = {"norm_0": _norm(cin), "conv_0": _conv(cin, cout), "emb": _dense(emb_dim, cout),
         "norm_1": _norm(cout), "conv_1": _conv(cout, cout, zero=True)}
    if cin != cout:
        p["skip"] = _dense(cin, cout)
    return p


def _attention(c, temporal, config):
    p = {"norm": _norm(c), "q": _dense(c, c), "k": _dense(c, c), "v": _dense(c, c),
         "out": _dense(c, c, zero=True)}
    width = 2 * config.max_relative_distance + 1
    if temporal and config.temporal_position == "shaw":  # a^K, a^V tables of [45], heads share
        p["rel_key"] = _Leaf((width, config.head_dim), "zeros")
        p["rel_value"] = _Leaf((width, config.head_dim), "zeros")
    elif temporal:
        p["rel_bias"] = _Leaf((c // config.head_dim, width), "zeros")
    return p


def _embedding(config):
    e = config.emb_dim
    p = {"logsnr": _dense(config.channels, e)}
    for i in range(1, config.emb_mlp_layers):
        p[f"mlp_{i}"] = _dense(e, e)
    if config.conditioning == "class":
        p["class"] = _dense(config.num_classes, e, bias=False)
    elif config.conditioning == "text":
        p["text"] = {"q": _dense(config.text_dim, e, bias=False),
                     "k": _dense(config.text_dim, e, bias=False),
                     "v": _dense(config.text_dim, e, bias=False),
                     "out": _dense(e, e, bias=False)}
    return p


def _spec(config: UNetConfig) -> dict:
    p2 = config.patch_size**2
    spec = {"emb": _embedding(config), "conv_in": _conv(config.in_channels * p2, config.channels)}
    for blk in blocks(config):
        if blk.kind == "res":
            spec[blk.name] = _residual(blk.in_channels, blk.out_channels, config.emb_dim)
        elif blk.kind in ("spatial_attn", "temporal_attn"):
            spec[blk.name] = _attention(blk.in_channels, blk.kind == "temporal_attn", config)
        else:
            spec[blk.name] = _conv(blk.in_channels, blk.out_channels)
    spec["out_norm"] = _norm(config.channels)
    spec["out_conv"] = _conv(config.channels, config.out_channels * p2, zero=True)
    return spec


def _map_spec(fn, spec):
    return {k: (_map_spec(fn, v) if isinstance(v, dict) else fn(v)) for k, v in spec.items()}


def param_shapes(config: UNetConfig) -> dict:
    """The parameter layout with shapes (tuples) as leaves, without allocating any array."""
    return _map_spec(lambda leaf: leaf.shape, _spec(config))


def count_params(config: UNetConfig) -> int:
    """The number of scalar parameters of the network (from shapes; nothing is allocated)."""
    total = 0

    def add(leaf):
        nonlocal total
        total += int(np.prod(leaf.shape))

    _map_spec(add, _spec(config))
    return total


def init(config: UNetConfig, key) -> dict:
    """Fresh parameters (NumPy float64) in the shared layout (module docstring).

    Weights are drawn N(0, 1/fan_in) in layout order from `numpy.random.default_rng(key)`
    (key: an int seed or a numpy Generator), so the same key gives the same parameters.
    Biases, the relative position tables (bias or a^K, a^V) and the last layer of every residual/attention block
    and of the network start at 0 (so every block starts as the identity); GroupNorm scales at 1.
    """
    rng = key if isinstance(key, np.random.Generator) else np.random.default_rng(key)

    def draw(leaf):
        if leaf.init == "zeros":
            return np.zeros(leaf.shape)
        if leaf.init == "ones":
            return np.ones(leaf.shape)
        return rng.standard_normal(leaf.shape) / np.sqrt(leaf.fan_in)

    return _map_spec(draw, _spec(config))


# ---------------------------------------------------------------------------------------------
# Evaluation


def _block_rng(rng, index):
    """Dropout randomness of block `index`: a numpy Generator is shared (drawn in block order);
    a JAX key is folded with the block index (`jax.random.fold_in(key, index)`), as in vdm_fast."""
    if rng is None or isinstance(rng, np.random.Generator):
        return rng
    import jax

    return jax.random.fold_in(rng, index)


def check_inputs(config: UNetConfig, z, logsnr, cond=None, frame_mask=None):
    """Raise ValueError, naming the value and what was expected, for inputs `apply` cannot take."""
    if z.ndim != 5:
        raise ValueError(f"z has shape {tuple(z.shape)}: expected [B, T, H, W, C] (5 axes)")
    b, t, h, w, c = z.shape
    if c != config.in_channels:
        raise ValueError(f"z has {c} channels (shape {tuple(z.shape)}): expected "
                         f"in_channels={config.in_channels}")
    factor = config.size_multiple
    if h % factor or w % factor:
        raise ValueError(f"z has spatial size {h}x{w}: expected multiples of "
                         f"patch_size*2**(K-1)={factor}")
    if tuple(logsnr.shape) != (b,):
        raise ValueError(f"logsnr has shape {tuple(logsnr.shape)}: expected [B] = ({b},)")
    if frame_mask is not None and tuple(frame_mask.shape) != (b, t):
        raise ValueError(f"frame_mask has shape {tuple(frame_mask.shape)}: expected [B, T] = "
                         f"({b}, {t})")
    if cond is None:
        return
    if config.conditioning == "none":
        raise ValueError("cond was given but config.conditioning='none': expected cond=None")
    if config.conditioning == "class" and tuple(cond.shape) != (b, config.num_classes):
        raise ValueError(f"class cond has shape {tuple(cond.shape)}: expected a one-hot "
                         f"[B, num_classes] = ({b}, {config.num_classes})")
    if config.conditioning == "text":
        if not (isinstance(cond, (tuple, list)) and len(cond) == 2):
            raise ValueError("text cond: expected a pair (tokens [B, L, text_dim], token_mask "
                             f"[B, L]), got {type(cond).__name__}")
        tokens, token_mask = cond
        if tokens.ndim != 3 or tokens.shape[0] != b or tokens.shape[2] != config.text_dim:
            raise ValueError(f"text tokens have shape {tuple(tokens.shape)}: expected [B, L, "
                             f"text_dim] = ({b}, L, {config.text_dim})")
        if tuple(token_mask.shape) != tuple(tokens.shape[:2]):
            raise ValueError(f"token_mask has shape {tuple(token_mask.shape)}: expected [B, L] = "
                             f"{tuple(tokens.shape[:2])}")


def apply(params, config: UNetConfig, z, logsnr, cond=None, frame_mask=None, *, dropout_rng=None):
    """The network's prediction ε̂_θ(z_t, c, λ_t) or v̂_θ(z_t, c, λ_t) (per config.target).

    params: the layout of `init`; z: z_t, [B, T, H, W, in_channels] (T and H, W may differ from
    the config's: any T, H and W multiples of patch_size·2**(K−1)); logsnr: λ_t, [B]; cond: None
    (the null condition c = 0), a float one-hot [B, num_classes], or (tokens [B, L, text_dim],
    token_mask bool [B, L]); frame_mask: bool [B, T], True marks an independent image frame of
    a joint image-video batch (None: all video frames); dropout_rng: None (evaluation), a numpy
    Generator, or a JAX key (folded per block, matching vdm_fast). Returns
    [B, T, H, W, out_channels].
    """
    check_inputs(config, z, logsnr, cond, frame_mask)
    xp = namespace(z)
    g = config.norm_groups
    emb = conditioning_embedding(params["emb"], config, logsnr, cond)
    h = conv_1x3x3(params["conv_in"], space_to_depth(z, config.patch_size))
    skips = [h]
    for index, blk in enumerate(blocks(config)):
        p = params[blk.name]
        if blk.concat_skip:
            h = xp.concat([h, skips.pop()], axis=-1)
        if blk.kind == "res":
            h = residual_block(p, h, emb, groups=g, dropout_rate=config.dropout,
                               rng=_block_rng(dropout_rng, index))
        elif blk.kind == "spatial_attn":
            h = spatial_attention(p, h, head_dim=config.head_dim, groups=g)
        elif blk.kind == "temporal_attn":
            h = temporal_attention(p, h, frame_mask, head_dim=config.head_dim, groups=g)
        elif blk.kind == "down":
            h = downsample(p, h)
        else:
            h = upsample(p, h)
        if blk.save_skip:
            skips.append(h)
    out = conv_1x3x3(params["out_conv"], silu(group_norm(params["out_norm"], h, groups=g)))
    return depth_to_space(out, config.patch_size)


# ---------------------------------------------------------------------------------------------
# Cost


def flops(config: UNetConfig, *, batch=1, frames=None, image_size=None) -> int:
    """FLOPs of one network evaluation: 2 × the multiply-adds of every convolution, dense layer
    and attention matmul (q kᵀ and the weighted sum of v; with temporal_position "shaw" also
    q a^Kᵀ and the weighted sum of a^V in temporal attention). Normalisation, activations, softmax
    and the text attention pooling (a few matmuls per caption) are left out. Every 3x3 tap is
    counted, zero padding included (XLA's cost analysis skips the padding: 3% fewer at 32x32).

    frames / image_size default to the config's.
    """
    t = config.frames if frames is None else frames
    size = config.image_size if image_size is None else image_size
    e = config.emb_dim
    total = 2 * (config.channels * e + (config.emb_mlp_layers - 1) * e * e)
    if config.conditioning == "class":
        total += 2 * config.num_classes * e

    def conv(pixels, cin, cout):
        return 2 * t * pixels * 9 * cin * cout

    shaw = 2 if config.temporal_position == "shaw" else 1  # q·a^K and α a^V: two more matmuls
    p = config.patch_size
    size //= p
    total += conv(size * size, config.in_channels * p * p, config.channels)
    for blk in blocks(config):
        r = size // 2**blk.level
        px = r * r
        cin, cout = blk.in_channels, blk.out_channels
        if blk.kind == "res":
            total += conv(px, cin, cout) + conv(px, cout, cout) + 2 * e * cout
            total += 2 * t * px * cin * cout if cin != cout else 0
        elif blk.kind == "spatial_attn":
            total += 2 * t * px * 4 * cin * cin + 2 * 2 * t * px * px * cin
        elif blk.kind == "temporal_attn":
            total += 2 * t * px * 4 * cin * cin + 2 * 2 * px * t * t * cin * shaw
        elif blk.kind == "down":
            total += conv(px // 4, cin, cout)
        else:
            total += conv(px * 4, cin, cout)
    total += conv(size * size, config.channels, config.out_channels * p * p)
    return batch * total
