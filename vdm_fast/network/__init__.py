"""The 3D U-Net of Sec. 3 / Fig. 1 as Equinox modules: twin of `vdm_ref.network`.

    from vdm_fast.network import from_params, to_params, init, apply

    model = from_params(config, init(config, 0))      # or any checkpoint in the shared layout
    pred = jax.jit(model)(z, logsnr, cond, frame_mask) # eqx modules are pytrees; config static

Modules: `layers` (Dense, Conv1x3x3, GroupNorm, Downsample, Upsample, BlockContext: what every
U-Net block reads, called as `block(h, ctx, *, key)`), `attention` (SpatialAttention,
TemporalAttention, AttentionPooling on `jax.nn.dot_product_attention`), `embedding`
(ConditioningEmbedding), `residual` (ResidualBlock), `unet` (UNet: wiring only). Every public
function of `vdm_ref.network` has a twin of the same name and signature here.
"""

from .attention import (
    CHUNK_LOGITS_BYTES,
    FUSED_LOGITS_LIMIT_BYTES,
    LOGITS_LIMIT_BYTES,
    AttentionPooling,
    SpatialAttention,
    TemporalAttention,
    attention_implementation,
    attention_pooling,
    chunk_sizes,
    dot_product_attention,
    memory_efficient_attention,
    relative_attention,
    relative_position_bias,
    spatial_attention,
    temporal_attention,
    temporal_attention_mask,
)
from .embedding import ConditioningEmbedding, conditioning_embedding, logsnr_embedding
from .layers import (
    BlockContext,
    Conv1x3x3,
    Dense,
    Downsample,
    GroupNorm,
    Upsample,
    conv_1x3x3,
    dense,
    depth_to_space,
    downsample,
    dropout,
    group_norm,
    silu,
    space_to_depth,
    upsample,
)
from .residual import ResidualBlock, residual_block
from .unet import (
    Block,
    UNet,
    apply,
    blocks,
    check_inputs,
    count_params,
    flops,
    from_params,
    init,
    param_shapes,
    to_params,
)

__all__ = [
    "AttentionPooling", "Block", "BlockContext", "ConditioningEmbedding", "Conv1x3x3", "Dense",
    "Downsample", "GroupNorm",
    "ResidualBlock", "SpatialAttention", "TemporalAttention", "UNet", "Upsample", "apply",
    "attention_implementation", "attention_pooling", "blocks", "check_inputs",
    "conditioning_embedding", "conv_1x3x3", "count_params", "dense", "depth_to_space",
    "CHUNK_LOGITS_BYTES", "FUSED_LOGITS_LIMIT_BYTES", "LOGITS_LIMIT_BYTES", "chunk_sizes", "dot_product_attention",
    "memory_efficient_attention", "relative_attention",
    "downsample", "dropout", "flops", "from_params", "group_norm", "init", "logsnr_embedding",
    "param_shapes", "relative_position_bias", "residual_block", "silu", "space_to_depth",
    "spatial_attention",
    "temporal_attention", "temporal_attention_mask", "to_params", "upsample",
]
