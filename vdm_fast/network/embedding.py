"""The conditioning embedding e(λ, c) as an Equinox module: twin of `vdm_ref.network.embedding`.

    e₀ = Dense(sinusoidal(λ)) + E_c(c),   e_i = Dense_i(SiLU(e_{i−1})),  i = 1 .. L − 1

Computed in float32 whatever the network's compute dtype (the sinusoid's phases reach
25·20 = 500 rad, beyond what bfloat16 resolves); the U-Net casts the result.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from vdm_ref.configs import UNetConfig
from vdm_ref.network.embedding import LOGSNR_SCALE, logsnr_embedding

from .attention import AttentionPooling
from .layers import Dense

__all__ = ["LOGSNR_SCALE", "ConditioningEmbedding", "conditioning_embedding", "logsnr_embedding"]


class ConditioningEmbedding(eqx.Module):
    """The embedding added into every residual block (Sec. 3). Twin of
    `vdm_ref.network.embedding.conditioning_embedding`."""

    logsnr: Dense
    mlp: tuple[Dense, ...]
    cond_class: Dense | None
    text: AttentionPooling | None
    config: UNetConfig = eqx.field(static=True)

    @classmethod
    def from_params(cls, params: dict, config: UNetConfig) -> ConditioningEmbedding:
        """From {"logsnr", "mlp_1".."mlp_{L−1}", "class" | "text"} (vdm_ref layout)."""
        return cls(
            Dense.from_params(params["logsnr"]),
            tuple(Dense.from_params(params[f"mlp_{i}"]) for i in range(1, config.emb_mlp_layers)),
            Dense.from_params(params["class"]) if config.conditioning == "class" else None,
            (AttentionPooling.from_params(params["text"], head_dim=config.head_dim)
             if config.conditioning == "text" else None),
            config)

    def to_params(self) -> dict:
        p = {"logsnr": self.logsnr.to_params()}
        p.update({f"mlp_{i + 1}": d.to_params() for i, d in enumerate(self.mlp)})
        if self.cond_class is not None:
            p["class"] = self.cond_class.to_params()
        if self.text is not None:
            p["text"] = self.text.to_params()
        return p

    def __call__(self, logsnr: Float[Array, " b"],
                 cond: Float[Array, "b k"] | tuple[Float[Array, "b l d"], Bool[Array, "b l"]]
                 | None = None) -> Float[Array, "b e"]:
        dtype = jnp.promote_types(self.logsnr.weight.dtype, jnp.float32)
        logsnr = jnp.asarray(logsnr).astype(dtype)
        e = self.logsnr(logsnr_embedding(logsnr, self.config.channels))
        if cond is not None and self.cond_class is not None:
            e = e + self.cond_class(jnp.asarray(cond).astype(dtype))
        elif cond is not None and self.text is not None:
            tokens, token_mask = cond
            e = e + self.text(jnp.asarray(tokens).astype(dtype), jnp.asarray(token_mask))
        for layer in self.mlp:
            e = layer(jax.nn.silu(e))
        return e


def conditioning_embedding(params, config, logsnr, cond=None):
    """Twin of `vdm_ref.network.embedding.conditioning_embedding`."""
    return ConditioningEmbedding.from_params(params, config)(logsnr, cond)
