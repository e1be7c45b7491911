"""Text encoder (Sec. 4.3) in JAX: the jitted twin of `vdm_ref.text_encoder`.

Same names, same parameter dict, same outputs (to float32 precision): token embeddings
`[B, L, 384]` of all-MiniLM-L6-v2 with padded positions zeroed, and the padding mask. Loading,
hash checks, tokenisation (`vdm_ref.support.minilm`) and the on-disk caption cache
(`vdm_ref.support.caption_cache`) are backend-free and re-exported; the forward pass is re-implemented with `jax.nn.dot_product_attention` and compiled
once per `[B, L]`. Run it in float32 (the weights' precision) or pass `dtype=jnp.bfloat16`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from vdm_ref.support.caption_cache import (  # backend-free, shared
    CaptionEmbeddings,
    cached_caption_embeddings,
    caption_cache_key,
)
from vdm_ref.support.minilm import (  # backend-free, shared
    MAX_LENGTH,
    MODEL_SHA256,
    TOKENIZER_SHA256,
    load_text_encoder_params,
    load_tokenizer,
    model_dir,
    tokenize,
)
from vdm_ref.text_encoder import HIDDEN, LAYER_NORM_EPS, NUM_HEADS

__all__ = [
    "HIDDEN", "MAX_LENGTH", "MODEL_SHA256", "TOKENIZER_SHA256",
    "CaptionEmbeddings", "TextEncoder", "cached_caption_embeddings", "caption_cache_key",
    "embed_captions_cached", "embed_tokens", "encode_captions", "encoder_layer", "gelu", "layer_norm",
    "load_text_encoder_params", "load_tokenizer", "mean_pooled_embedding", "model_dir",
    "self_attention", "text_encoder", "tokenize",
]


def _last(v, x):
    """A per-feature vector `[D]` shaped to broadcast against x `[..., D]` (explicit rank)."""
    return jnp.reshape(v, (1,) * (x.ndim - 1) + (-1,))


def gelu(x):
    """GELU(x) = ½ x (1 + erf(x / √2)) (exact)."""
    return jax.nn.gelu(x, approximate=False)


def layer_norm(x, p, eps: float = LAYER_NORM_EPS):
    """LN(x) = (x - mean) / √(var + ε) · scale + bias over the last axis (ε = 1e-12)."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * _last(p["scale"], x) + _last(p["bias"], x)


def _dense(x, p):
    return x @ p["kernel"] + _last(p["bias"], x)


def self_attention(x, mask, p, num_heads: int = NUM_HEADS):
    """Multi-head self-attention softmax(Q Kᵀ/√d + log m) V and output projection (fused kernel).

    x: `[B, L, D]`; mask: bool `[B, L]` (False keys get weight 0). Returns `[B, L, D]`.
    """
    b, length, d = x.shape

    def heads(y):  # [B, L, D] -> [B, L, H, dh], the layout dot_product_attention takes
        return jnp.reshape(y, (b, length, num_heads, d // num_heads))

    q, k, v = (heads(_dense(x, p[n])) for n in ("query", "key", "value"))
    out = jax.nn.dot_product_attention(q, k, v, mask=mask[:, None, None, :])
    return _dense(jnp.reshape(out, (b, length, d)), p["attn_out"])


def encoder_layer(x, mask, p):
    """One post-LN BERT layer: h' = LN(x + Attn(x)); LN(h' + GELU(h' W₁ + b₁) W₂ + b₂)."""
    h = layer_norm(x + self_attention(x, mask, p), p["attn_norm"])
    return layer_norm(h + _dense(gelu(_dense(h, p["mlp_in"])), p["mlp_out"]), p["mlp_norm"])


def embed_tokens(params, token_ids):
    """h⁰ = LN(E_word[w] + E_pos[0..L) + E_type[0]), `[B, L, D]`."""
    e = params["embeddings"]
    length = token_ids.shape[1]
    x = e["word"][token_ids] + e["position"][None, :length] + jnp.reshape(e["token_type"][0], (1, 1, -1))
    return layer_norm(x, e["norm"])


@jax.jit
def text_encoder(params, token_ids, mask):
    """Token embeddings of all-MiniLM-L6-v2, padded positions set to 0 (jitted; see vdm_ref).

    **Arguments:** `params` (the shared dict; convert once with `to_device` to avoid re-uploading
    90 MB per call); `token_ids` int `[B, L]`; `mask` bool `[B, L]`.

    **Returns:** `[B, L, 384]` in the params' dtype.
    """
    mask = jnp.asarray(mask, bool)
    x = embed_tokens(params, jnp.asarray(token_ids, jnp.int32))
    for layer in params["layers"]:
        x = encoder_layer(x, mask, layer)
    return jnp.where(mask[..., None], x, jnp.zeros((), x.dtype))


def to_device(params, dtype=jnp.float32):
    """The parameter dict as JAX arrays of `dtype`."""
    return jax.tree.map(lambda a: jnp.asarray(a, dtype), params)


def mean_pooled_embedding(embeddings, mask):
    """Masked mean over tokens, L2-normalised (sentence-transformers' sentence embedding). `[B, D]`."""
    m = jnp.asarray(mask, embeddings.dtype)[..., None]
    u = jnp.sum(embeddings * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1e-9)
    return u / jnp.maximum(jnp.linalg.norm(u, axis=-1, keepdims=True), 1e-12)


class TextEncoder(eqx.Module):
    """Captions -> (token embeddings `[B, L, 384]`, mask `[B, L]`), weights held on device.

    **Arguments:** `params` (default: the packaged weights); `dtype` (float32, or bfloat16).
    Call: `encoder(captions, max_length=None)`; tokenisation runs in Python, the forward is jitted.
    """

    params: dict
    hidden_size: int = eqx.field(static=True, default=HIDDEN)

    def __init__(self, params: dict | None = None, *, dtype=jnp.float32):
        self.params = to_device(load_text_encoder_params() if params is None else params, dtype)
        self.hidden_size = HIDDEN

    def __call__(self, captions: str | Sequence[str], *, max_length: int | None = None):
        token_ids, mask = tokenize(captions, max_length=max_length)
        return text_encoder(self.params, token_ids, mask), jnp.asarray(mask)


def encode_captions(captions: str | Sequence[str], *, max_length: int | None = None,
                    params: dict | None = None):
    """Tokenise and encode: `(embeddings float32 [B, L, 384], mask bool [B, L])`."""
    return TextEncoder(params)(captions, max_length=max_length)


def embed_captions_cached(captions: Sequence[str], *, cache_dir: str | Path | None = None,
                          max_length: int | None = None, batch_size: int = 64,
                          params: dict | None = None) -> CaptionEmbeddings:
    """A dataset's caption embeddings, computed once with the jitted encoder and cached on disk.

    Same arguments and result as `vdm_ref.text_encoder.embed_captions_cached` (a separate cache
    entry: the backend is part of the key). One compilation: every batch has the same shape.
    """
    p = to_device(load_text_encoder_params() if params is None else params)
    return cached_caption_embeddings(captions, lambda ids, m: np.asarray(text_encoder(p, ids, m)),
                                     backend="fast", cache_dir=cache_dir, max_length=max_length,
                                     batch_size=batch_size, pad_batches=True)
