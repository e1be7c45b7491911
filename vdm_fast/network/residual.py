"""The residual block as an Equinox module: twin of `vdm_ref.network.residual`."""

from __future__ import annotations

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray

from .layers import BlockContext, Conv1x3x3, Dense, GroupNorm, dropout

__all__ = ["ResidualBlock", "residual_block"]


class ResidualBlock(eqx.Module):
    """Wide-ResNet block with 1x3x3 convolutions and the embedding added (Sec. 3):

        h = Conv₀(SiLU(GN₀(x))) + Dense(SiLU(e));  h = Conv₁(Dropout(SiLU(GN₁(h))));
        out = Skip(x) + h.

    Twin of `vdm_ref.network.residual.residual_block`. Called as a U-Net block,
    `block(x, ctx, *, key)`: e = ctx.emb, `key` the dropout key (None in evaluation).
    """

    norm_0: GroupNorm
    conv_0: Conv1x3x3
    emb: Dense
    norm_1: GroupNorm
    conv_1: Conv1x3x3
    skip: Dense | None
    dropout_rate: float = eqx.field(static=True, default=0.0)

    @classmethod
    def from_params(cls, params: dict, *, groups: int, dropout_rate: float = 0.0) -> ResidualBlock:
        """From {"norm_0", "conv_0", "emb", "norm_1", "conv_1", "skip" (if Cin ≠ Cout)}."""
        return cls(GroupNorm.from_params(params["norm_0"], groups=groups),
                   Conv1x3x3.from_params(params["conv_0"]), Dense.from_params(params["emb"]),
                   GroupNorm.from_params(params["norm_1"], groups=groups),
                   Conv1x3x3.from_params(params["conv_1"]),
                   Dense.from_params(params["skip"]) if "skip" in params else None, dropout_rate)

    def to_params(self) -> dict:
        p = {"norm_0": self.norm_0.to_params(), "conv_0": self.conv_0.to_params(),
             "emb": self.emb.to_params(), "norm_1": self.norm_1.to_params(),
             "conv_1": self.conv_1.to_params()}
        if self.skip is not None:
            p["skip"] = self.skip.to_params()
        return p

    def __call__(self, x: Float[Array, "b t h w cin"], ctx: BlockContext, *,
                 key: PRNGKeyArray | None = None) -> Float[Array, "b t h w cout"]:
        h = self.conv_0(jax.nn.silu(self.norm_0(x)))
        e = self.emb(jax.nn.silu(ctx.emb.astype(x.dtype)))
        h = h + e[:, None, None, None, :]
        h = dropout(jax.nn.silu(self.norm_1(h)), self.dropout_rate, key)
        h = self.conv_1(h)
        return (x if self.skip is None else self.skip(x)) + h


def residual_block(params, x, emb, *, groups, dropout_rate=0.0, rng=None):
    """Twin of `vdm_ref.network.residual.residual_block` (rng: a JAX key or None)."""
    return ResidualBlock.from_params(params, groups=groups, dropout_rate=dropout_rate)(
        x, BlockContext(emb), key=rng)
