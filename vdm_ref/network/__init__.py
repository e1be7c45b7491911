"""The factorised space-time 3D U-Net of Sec. 3 / Fig. 1 / Appendix A, as pure functions.

    params = init(config, key)                       # nested dict of NumPy float64 arrays
    pred = apply(params, config, z, logsnr, cond, frame_mask, dropout_rng=None)

Modules: `layers` (dense / 1x1, 1x3x3 convolution, per-frame GroupNorm, SiLU, dropout, down/up
sampling, space-to-depth patches), `attention` (spatial and temporal attention, relative position
bias or Shaw et al.'s relative position embeddings, joint-training mask, attention pooling),
`embedding` (sinusoidal λ embedding, conditioning MLP), `residual` (the residual block), `unet`
(the block list, init, apply, parameter shapes and FLOPs).
See docs/network.md for the paper -> code map and the parameter layout.
"""

from .attention import (
    attention_pooling,
    dot_product_attention,
    relative_attention,
    relative_position_bias,
    relative_position_embeddings,
    spatial_attention,
    temporal_attention,
    temporal_attention_mask,
)
from .embedding import conditioning_embedding, logsnr_embedding
from .layers import (
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
from .residual import residual_block
from .unet import Block, apply, blocks, check_inputs, count_params, flops, init, param_shapes

__all__ = [
    "Block", "apply", "attention_pooling", "blocks", "check_inputs", "conditioning_embedding",
    "conv_1x3x3", "count_params", "dense", "depth_to_space", "dot_product_attention",
    "downsample", "dropout",
    "flops", "group_norm", "init", "logsnr_embedding", "param_shapes", "relative_attention",
    "relative_position_bias", "relative_position_embeddings",
    "residual_block", "silu", "space_to_depth", "spatial_attention", "temporal_attention",
    "temporal_attention_mask", "upsample",
]
