"""The conditioning embedding (Sec. 3): an MLP over a sinusoidal embedding of λ plus c.

"Conditioning information, such as c and λt, is provided to the network in the form of an
embedding vector added into each residual block (we find it helpful ... to process these
embedding vectors using several MLP layers before adding)."

    e₀ = Dense(sinusoidal(λ)) + E_c(c)            (first MLP layer, plus the condition)
    e_i = Dense_i(SiLU(e_{i−1})),  i = 1 .. L − 1  (L = emb_mlp_layers)

E_c is a bias-free linear map of the one-hot class (class conditioning) or the attention
pooling of the caption tokens (text conditioning), so the null condition c = 0 adds exactly 0.
"""

import numpy as np

from .._array import namespace
from .attention import attention_pooling
from .layers import dense, silu

#: λ is scaled by 1000 / 40 before the sinusoidal embedding: λ ∈ [−20, 20] covers an interval
#: 1000 wide, the timestep range the transformer embedding (max period 10 000) was made for.
LOGSNR_SCALE = 1000.0 / 40.0


def logsnr_embedding(logsnr, dim):
    """Sinusoidal embedding of the log-SNR: [sin(s λ ω_k), cos(s λ ω_k)]_{k < dim/2},

    ω_k = 10000^{−k / (dim/2)}, s = `LOGSNR_SCALE`. logsnr: [B]. Returns [B, dim].
    """
    xp = namespace(logsnr)
    half = dim // 2
    freqs = LOGSNR_SCALE * np.exp(-np.log(10000.0) * np.arange(half) / half)
    angles = logsnr[:, None] * xp.asarray(freqs, dtype=logsnr.dtype)[None, :]
    return xp.concat([xp.sin(angles), xp.cos(angles)], axis=1)


def conditioning_embedding(params, config, logsnr, cond=None):
    """The embedding e(λ, c) added into every residual block (see the module docstring).

    params: {"logsnr": {"w": [channels, E], "b": [E]}, "mlp_1" .. "mlp_{L−1}": {"w": [E, E],
    "b": [E]}, and "class": {"w": [num_classes, E]} or "text": attention-pooling params};
    config: a UNetConfig; logsnr: [B]; cond: None (the null condition), a float one-hot
    [B, num_classes] (class), or a pair (tokens [B, L, text_dim], token_mask bool [B, L])
    (text). Returns [B, E].
    """
    e = dense(params["logsnr"], logsnr_embedding(logsnr, config.channels))
    if cond is not None and config.conditioning == "class":
        e = e + dense(params["class"], cond)
    elif cond is not None and config.conditioning == "text":
        tokens, token_mask = cond
        e = e + attention_pooling(params["text"], tokens, token_mask, head_dim=config.head_dim)
    for i in range(1, config.emb_mlp_layers):
        e = dense(params[f"mlp_{i}"], silu(e))
    return e
