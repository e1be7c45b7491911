"""Attention of the factorised space-time U-Net (Sec. 3) and the text attention pooling (Sec. 4.3).

- `spatial_attention`: self-attention over the H·W positions of each frame (frames are a batch
  axis).
- `temporal_attention`: self-attention over the T frames at each position (space is a batch
  axis), with a learned relative position encoding, clipped beyond a maximum distance D so the
  network runs on other frame counts: either a scalar bias per head (`relative_position_bias`,
  T5-style; `UNetConfig.temporal_position = "bias"`) or the relative position embeddings of
  Shaw et al. 2018 [45] that Sec. 3 cites (`relative_position_embeddings` added to keys and
  values, `relative_attention`; "shaw"); and the joint-training mask
  (`temporal_attention_mask`: an image frame attends only to itself).
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


def _attention_weights(logits, mask):
    """α = softmax over the last axis of the logits, masked entries (mask False) set to
    0.7 × the dtype's most negative value first, as `jax.nn.dot_product_attention` does (so a
    row with every key masked averages all keys uniformly)."""
    xp = namespace(logits)
    if mask is not None:
        masked = xp.full_like(logits, 0.7 * float(xp.finfo(logits.dtype).min))
        logits = xp.where(mask, logits, masked)
    return _softmax(logits, axis=-1)


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
    out = _attention_weights(logits, mask) @ vh  # [N, heads, Sq, d]
    return xp.permute_dims(out, (0, 2, 1, 3))


def relative_attention(q, k, v, key_embeddings, value_embeddings, mask=None):
    """Self-attention with relative position representations (Shaw et al. 2018 [45], Eq. 3-5
    there), per batch element and head:

        e_ij = q_i · (k_j + a^K_ij) / √d,   α_ij = softmax_j(e_ij),   z_i = Σ_j α_ij (v_j + a^V_ij).

    q, k, v: [N, S, heads, d]; key_embeddings a^K, value_embeddings a^V: [S, S, d], shared by
    the heads (as in [45]); mask: bool, broadcastable to [N, heads, S, S], True = keep, masked
    as in `dot_product_attention`. Returns [N, S, heads, d].
    """
    xp = namespace(q)
    n, s, heads, d = q.shape
    qh = xp.permute_dims(q, (0, 2, 1, 3))  # [N, heads, S, d]
    kh = xp.permute_dims(k, (0, 2, 3, 1))  # [N, heads, d, S]
    vh = xp.permute_dims(v, (0, 2, 1, 3))  # [N, heads, S, d]
    # q_i · a^K_ij as one matmul per query position i: [S_i, N·heads, d] @ [S_i, d, S_j]
    q_by_i = xp.reshape(xp.permute_dims(q, (1, 0, 2, 3)), (s, n * heads, d))
    rel = q_by_i @ xp.permute_dims(key_embeddings, (0, 2, 1))  # [S_i, N·heads, S_j]
    rel = xp.permute_dims(xp.reshape(rel, (s, n, heads, s)), (1, 2, 0, 3))  # [N, heads, S_i, S_j]
    alpha = _attention_weights((qh @ kh + rel) / float(np.sqrt(d)), mask)  # [N, heads, S, S]
    out = xp.permute_dims(alpha @ vh, (0, 2, 1, 3))  # Σ_j α_ij v_j: [N, S, heads, d]
    # Σ_j α_ij a^V_ij likewise: [S_i, N·heads, S_j] @ [S_i, S_j, d]
    alpha_by_i = xp.reshape(xp.permute_dims(alpha, (2, 0, 1, 3)), (s, n * heads, s))
    out_rel = xp.reshape(alpha_by_i @ value_embeddings, (s, n, heads, d))
    return out + xp.permute_dims(out_rel, (1, 0, 2, 3))


def _heads(x, head_dim):
    """[N, S, C] -> [N, S, C / head_dim, head_dim]."""
    xp = namespace(x)
    n, s, c = x.shape
    return xp.reshape(x, (n, s, c // head_dim, head_dim))


def _self_attention(params, x, head_dim, attend=dot_product_attention):
    """out(attend(q, k, v)) with q, k, v = dense projections of x: [N, S, C] -> [N, S, C]."""
    xp = namespace(x)
    q, k, v = (_heads(dense(params[name], x), head_dim) for name in ("q", "k", "v"))
    o = attend(q, k, v)
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
    index = xp.asarray(_clipped_offsets(frames, (width - 1) // 2))
    return xp.reshape(xp.take(table, index, axis=1), (heads, frames, frames))


def _clipped_offsets(frames, d):
    """clip(j − i, −d, d) + d for query frame i and key frame j, flattened (NumPy int)."""
    offsets = np.arange(frames)[None, :] - np.arange(frames)[:, None]
    return (np.clip(offsets, -d, d) + d).reshape(-1)


def relative_position_embeddings(table, frames):
    """Relative position representations a_ij = w_{clip(j − i, k)} (Shaw et al. 2018 [45]),
    clip(x, k) = max(−k, min(k, x)): one learned vector per clipped frame offset.

    table: [2k + 1, d] (row r holds w_{r − k}). Returns [frames, frames, d]; any number of
    frames works, offsets beyond ±k sharing the end rows.
    """
    xp = namespace(table)
    width, d = table.shape
    index = xp.asarray(_clipped_offsets(frames, (width - 1) // 2))
    return xp.reshape(xp.take(table, index, axis=0), (frames, frames, d))


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

    With params["rel_bias"] (temporal_position "bias"): logits[h, i, j] = q_i·k_j / √d +
    B[h, i, j] (`relative_position_bias`). With params["rel_key"], params["rel_value"] ("shaw",
    Sec. 3's relative position embeddings [45]): e_ij = q_i·(k_j + a^K_ij) / √d and
    z_i = Σ_j α_ij (v_j + a^V_ij) (`relative_attention`, `relative_position_embeddings`).
    Either way masked by `temporal_attention_mask(frame_mask)` (None: every frame is a video
    frame).

    params: {"norm", "q", "k", "v", "out" (as spatial_attention)} and either {"rel_bias":
    [heads, 2D + 1]} or {"rel_key", "rel_value": [2D + 1, head_dim]}; x: [B, T, H, W, C];
    frame_mask: bool [B, T] or None. Returns x's shape.
    """
    xp = namespace(x)
    b, t, h, w, c = x.shape
    y = xp.permute_dims(group_norm(params["norm"], x, groups=groups), (0, 2, 3, 1, 4))
    y = xp.reshape(y, (b * h * w, t, c))
    mask = None
    if frame_mask is not None:
        keep = xp.reshape(temporal_attention_mask(frame_mask), (b, 1, 1, t, t))
        mask = xp.reshape(xp.broadcast_to(keep, (b, h * w, 1, t, t)), (b * h * w, 1, t, t))
    if "rel_key" in params:
        a_key = relative_position_embeddings(params["rel_key"], t)
        a_value = relative_position_embeddings(params["rel_value"], t)

        def attend(q, k, v):
            return relative_attention(q, k, v, a_key, a_value, mask=mask)
    else:
        heads = params["rel_bias"].shape[0]
        bias = xp.reshape(relative_position_bias(params["rel_bias"], t), (1, heads, t, t))

        def attend(q, k, v):
            return dot_product_attention(q, k, v, bias=bias, mask=mask)
    y = _self_attention(params, y, head_dim, attend)
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
