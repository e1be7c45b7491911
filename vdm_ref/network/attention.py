"""Attention of the factorised space-time U-Net (Sec. 3) and the text attention pooling (Sec. 4.3).

- `spatial_attention`: self-attention over the H·W positions of each frame (frames are a batch
  axis).
- `temporal_attention`: self-attention over the T frames at each position (space is a batch
  axis), with a learned relative position bias (`relative_position_bias`, Toeplitz in the frame
  offset and clipped beyond a maximum distance, so the network runs on other frame counts) and
  the joint-training mask (`temporal_attention_mask`: an image frame attends only to itself).
- `attention_pooling`: a text caption's token embeddings reduced to one vector.

Heads: a C-channel activation is split into C / head_dim heads, channel c = head·head_dim + i.
"""

import numpy as np

from .._array import namespace
from .layers import dense, group_norm


def _softmax(logits, axis=-1):
    """softmax(l)_j = exp(l_j − max l) / Σ_k exp(l_k − max l)."""
    xp = namespace(logits)
    e = xp.exp(logits - xp.max(logits, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)


def dot_product_attention(q, k, v, bias=None, mask=None):
    """Multi-head attention: softmax(q kᵀ / √d + bias) v, per batch element and head.

    q: [N, Sq, heads, d]; k, v: [N, Sk, heads, d]; bias: broadcastable to [N, heads, Sq, Sk]
    (4-D); mask: bool, broadcastable to [N, heads, Sq, Sk], True = keep. Masked logits are set
    to 0.7 × the dtype's most negative value, as `jax.nn.dot_product_attention` does (so a row
    with every key masked averages all keys uniformly in both). Returns [N, Sq, heads, d].
    """
    xp = namespace(q)
    d = q.shape[-1]
    qh = xp.permute_dims(q, (0, 2, 1, 3))  # [N, heads, Sq, d]
    kh = xp.permute_dims(k, (0, 2, 3, 1))  # [N, heads, d, Sk]
    vh = xp.permute_dims(v, (0, 2, 1, 3))  # [N, heads, Sk, d]
    logits = (qh @ kh) / float(np.sqrt(d))
    if bias is not None:
        logits = logits + bias
    if mask is not None:
        masked = xp.full_like(logits, 0.7 * float(xp.finfo(logits.dtype).min))
        logits = xp.where(mask, logits, masked)
    out = _softmax(logits, axis=-1) @ vh  # [N, heads, Sq, d]
    return xp.permute_dims(out, (0, 2, 1, 3))


def _heads(x, head_dim):
    """[N, S, C] -> [N, S, C / head_dim, head_dim]."""
    xp = namespace(x)
    n, s, c = x.shape
    return xp.reshape(x, (n, s, c // head_dim, head_dim))


def _self_attention(params, x, head_dim, bias=None, mask=None):
    """out(attention(q, k, v)) with q, k, v = dense projections of x: [N, S, C] -> [N, S, C]."""
    xp = namespace(x)
    q, k, v = (_heads(dense(params[name], x), head_dim) for name in ("q", "k", "v"))
    o = dot_product_attention(q, k, v, bias=bias, mask=mask)
    n, s, heads, d = o.shape
    return dense(params["out"], xp.reshape(o, (n, s, heads * d)))


def spatial_attention(params, x, *, head_dim, groups):
    """Spatial self-attention block: x + Attn_space(GN(x)), frames treated as a batch axis.

    params: {"norm": {"scale", "offset"}, "q", "k", "v", "out": {"w": [C, C], "b": [C]}};
    x: [B, T, H, W, C]. Returns x's shape.
    """
    xp = namespace(x)
    b, t, h, w, c = x.shape
    y = xp.reshape(group_norm(params["norm"], x, groups=groups), (b * t, h * w, c))
    y = _self_attention(params, y, head_dim)
    return x + xp.reshape(y, x.shape)


def relative_position_bias(table, frames):
    """Learned relative position bias B[h, i, j] = table[h, clip(j − i, −D, D) + D].

    Toeplitz in the frame offset j − i (key frame minus query frame); offsets beyond ±D share
    the end entries, so any number of frames works. table: [heads, 2D + 1]. Returns
    [heads, frames, frames].
    """
    xp = namespace(table)
    heads, width = table.shape
    d = (width - 1) // 2
    offsets = np.arange(frames)[None, :] - np.arange(frames)[:, None]
    index = xp.asarray((np.clip(offsets, -d, d) + d).reshape(-1))
    return xp.reshape(xp.take(table, index, axis=1), (heads, frames, frames))


def temporal_attention_mask(frame_mask):
    """Joint image-video mask (Sec. 3, 4.3.1): keep[b, i, j] = (i = j) ∨ (video_i ∧ video_j).

    frame_mask: bool [B, T], True = an independent image frame appended for joint training.
    Video frames attend to the video frames of their example; an image frame only to itself,
    so its output does not depend on any other frame. Returns bool [B, T, T].
    """
    xp = namespace(frame_mask)
    t = frame_mask.shape[1]
    video = xp.logical_not(frame_mask)
    both_video = xp.logical_and(video[:, :, None], video[:, None, :])
    same = xp.asarray(np.eye(t, dtype=bool)[None, :, :])
    return xp.logical_or(both_video, same)


def temporal_attention(params, x, frame_mask=None, *, head_dim, groups):
    """Temporal self-attention block: x + Attn_time(GN(x)), spatial positions as a batch axis.

    logits[h, i, j] = q_i·k_j / √d + B[h, i, j] (`relative_position_bias`), masked by
    `temporal_attention_mask(frame_mask)` (None: every frame is a video frame).

    params: {"norm", "q", "k", "v", "out" (as spatial_attention), "rel_bias": [heads, 2D + 1]};
    x: [B, T, H, W, C]; frame_mask: bool [B, T] or None. Returns x's shape.
    """
    xp = namespace(x)
    b, t, h, w, c = x.shape
    y = xp.permute_dims(group_norm(params["norm"], x, groups=groups), (0, 2, 3, 1, 4))
    y = xp.reshape(y, (b * h * w, t, c))
    heads = params["rel_bias"].shape[0]
    bias = xp.reshape(relative_position_bias(params["rel_bias"], t), (1, heads, t, t))
    mask = None
    if frame_mask is not None:
        keep = xp.reshape(temporal_attention_mask(frame_mask), (b, 1, 1, t, t))
        mask = xp.reshape(xp.broadcast_to(keep, (b, h * w, 1, t, t)), (b * h * w, 1, t, t))
    y = _self_attention(params, y, head_dim, bias=bias, mask=mask)
    y = xp.permute_dims(xp.reshape(y, (b, h, w, t, c)), (0, 3, 1, 2, 4))
    return x + y


def attention_pooling(params, tokens, token_mask, *, head_dim):
    """Attention pooling of a caption's token embeddings (Sec. 4.3) to one vector.

    One query, the masked mean token ē = Σ_j m_j e_j / Σ_j m_j, attends over the valid tokens:
    pooled = Σ_j softmax_j(q·k_j / √d | m_j) v_j per head, with q = ē W_q, k_j = e_j W_k,
    v_j = e_j W_v, then out = pooled W_o. Padded tokens (m_j = False) take no part. No
    projection has a bias, so the null condition c = 0 (all-zero tokens) and a caption with
    every token padded both give exactly 0.

    params: {"q", "k", "v": {"w": [D_text, E]}, "out": {"w": [E, E]}}; tokens: [B, L, D_text];
    token_mask: bool [B, L], True = a real token. Returns [B, E].
    """
    xp = namespace(tokens)
    b, l, _ = tokens.shape
    m = xp.astype(token_mask, tokens.dtype)
    count = xp.sum(m, axis=1)
    mean = xp.sum(tokens * m[:, :, None], axis=1) / xp.maximum(count, xp.ones_like(count))[:, None]
    q = _heads(dense(params["q"], mean[:, None, :]), head_dim)  # [B, 1, heads, d]
    k = _heads(dense(params["k"], tokens), head_dim)  # [B, L, heads, d]
    v = _heads(dense(params["v"], tokens), head_dim)
    o = dot_product_attention(q, k, v, mask=xp.reshape(token_mask, (b, 1, 1, l)))
    has_token = xp.astype(xp.any(token_mask, axis=1), o.dtype)  # an all-padded caption pools to 0
    o = xp.reshape(o, (b, -1)) * has_token[:, None]
    return dense(params["out"], o)
