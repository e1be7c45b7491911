"""The residual block of the 3D U-Net (Sec. 3): Wide-ResNet style with 1x3x3 convolutions."""

from .._array import namespace
from .layers import conv_1x3x3, dense, dropout, group_norm, silu


def residual_block(params, x, emb, *, groups, dropout_rate=0.0, rng=None):
    """Residual block with the conditioning embedding added (Sec. 3, Fig. 1):

        h   = Conv₀(SiLU(GN₀(x))) + Dense(SiLU(e))     (e broadcast over frames and space)
        h   = Conv₁(Dropout(SiLU(GN₁(h))))
        out = Skip(x) + h,   Skip = 1x1 convolution if Cin ≠ Cout, else the identity.

    Conv₀, Conv₁ are 1x3x3 (space-only) convolutions; GN is per-frame GroupNorm.

    params: {"norm_0": {"scale", "offset": [Cin]}, "conv_0": {"w": [1, 3, 3, Cin, Cout], "b"},
    "emb": {"w": [E, Cout], "b"}, "norm_1": [Cout], "conv_1": {"w": [1, 3, 3, Cout, Cout], "b"},
    "skip": {"w": [Cin, Cout], "b"} (only when Cin ≠ Cout)}; x: [B, T, H, W, Cin];
    emb: [B, E]; rng: dropout randomness (see `layers.dropout`), None in evaluation.
    Returns [B, T, H, W, Cout].
    """
    xp = namespace(x)
    h = conv_1x3x3(params["conv_0"], silu(group_norm(params["norm_0"], x, groups=groups)))
    e = dense(params["emb"], silu(emb))
    h = h + xp.reshape(e, (e.shape[0], 1, 1, 1, e.shape[1]))
    h = dropout(silu(group_norm(params["norm_1"], h, groups=groups)), dropout_rate, rng)
    h = conv_1x3x3(params["conv_1"], h)
    skip = dense(params["skip"], x) if "skip" in params else x
    return skip + h
