"""Attention modules of the 3D U-Net: twins of `vdm_ref.network.attention`.

- `SpatialAttention`: over the H·W positions of each frame.
- `TemporalAttention`: over the T frames at each position, with the learned relative position
  encoding read from its parameters — the scalar bias per head (`relative_position_bias`) or
  Shaw et al.'s key/value embeddings (`relative_position_embeddings`), both reused from vdm_ref
  (a gather under jit) — and the joint image-video mask (`temporal_attention_mask`, likewise).
- `AttentionPooling`: a caption's tokens to one vector (Sec. 4.3).

Attention paths (chosen per call from static shapes, see docs/network.md "Attention paths"):

- cuDNN's fused kernel (`jax.nn.dot_product_attention(implementation="cudnn")`) on a GPU when
  the inputs are bfloat16/float16 and head_dim is a multiple of 8 and at most 128
  (`attention_implementation`); it never materialises the logits. A cuDNN failure at trace
  time falls back to the paths below with a warning instead of crashing. A module's
  `implementation` field ('xla', 'cudnn' or None = automatic) overrides the choice.
- plain (XLA), when the float32 logits [N, heads, Sq, Sk] take at most `LOGITS_LIMIT_BYTES`
  (256 MiB) with a bias, mask or Shaw tables, `FUSED_LOGITS_LIMIT_BYTES` (16 MiB) without:
  the kernel below as one chunk, which materialises the logits once and normalises after the
  P·V matmul (deferred normalisation: Sq·d divisions instead of Sq·Sk). It computes what
  `jax.nn.dot_product_attention(implementation="xla")` computes (same float32 logits, mask
  value and fully-masked-row behaviour), measured faster on the CPU (docs/network.md).
- memory-efficient (`memory_efficient_attention`) above it: query chunks, each with an online
  softmax over key chunks (running max and normaliser, float32 accumulation, normalised after
  the P·V matmul), so neither the forward nor the backward pass holds more than one chunk's
  logits (`CHUNK_LOGITS_BYTES`). Without bias, mask or Shaw tables its backward pass is a custom
  VJP (`vdm_fast.network.attention_backward`: the forward keeps the output and the row
  log-normalisers, the backward recomputes each tile's logits once); with them, each chunk is
  under `jax.checkpoint` and automatic differentiation runs through the loops.

On the plain path the blocks keep their activations' layout (measured −4 % of the mnist-small
training step, docs/benchmarks.md): `SpatialAttention` produces q, k, v heads-major
[N, heads, S, d] straight from the projections (einsum with the weight viewed as [C, heads, d])
and its output projection reads heads-major; `TemporalAttention` computes q, k, v with one
matmul of the concatenated weights and attends over the frame axis of [B, T, H·W, heads, d]
(`frame_attention`), never transposing the video to frames-last and back. The parameter layout
is unchanged. The cuDNN and memory-efficient paths take the [N, S, heads, d] layout.

Shaw et al.'s relative attention (`relative_attention`) needs the attention weights for its
value term, so it has no cuDNN path; it takes the plain or the memory-efficient path by the
same rule.
"""

from __future__ import annotations

import functools
import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from vdm_ref.network.attention import (
    relative_position_bias,
    relative_position_embeddings,
    temporal_attention_mask,
)

from .attention_backward import attention_backward, backward_chunk_sizes
from .layers import Dense, GroupNorm, _bias

__all__ = [
    "AttentionPooling", "CHUNK_LOGITS_BYTES", "FUSED_LOGITS_LIMIT_BYTES", "KEY_CHUNK", "LOGITS_LIMIT_BYTES",
    "QUERY_TILE",
    "SpatialAttention", "TemporalAttention", "attention_implementation", "attention_pooling",
    "chunk_sizes", "dot_product_attention", "frame_attention", "logits_bytes", "memory_efficient_attention",
    "relative_attention", "relative_position_bias", "relative_position_embeddings",
    "spatial_attention", "temporal_attention", "temporal_attention_mask",
]

LOGITS_LIMIT_BYTES = 256 * 2**20
"""Above this size of the float32 logits (N·heads·Sq·Sk·4 bytes) attention with a bias, a mask
or Shaw's tables (the temporal attention) takes the memory-efficient path. 256 MiB keeps the
plain path for every temporal attention of the CPU presets. Read at trace time: tests lower it
(monkeypatch) to force the chunked path on small shapes."""

FUSED_LOGITS_LIMIT_BYTES = 16 * 2**20
"""The same limit for attention without bias, mask or Shaw tables (the spatial attention), whose
chunked path is differentiated by `attention_backward`'s tiles: above 16 MiB of logits it
measured faster than the plain path on the 2-core CPU, forward + backward, at every shape tried
(e.g. 1024 tokens, 16 frames, 4 heads of 32: 0.39 s against 0.57 s; docs/benchmarks.md), and it
never holds the logits. mnist-small's training attention stays plain (4 MiB at batch 8)."""

CHUNK_LOGITS_BYTES = 16 * 2**20
"""The memory-efficient path sizes its query chunks so one chunk's float32 logits
(N·heads·query_chunk·key_chunk·4 bytes) take at most this (at least one query per chunk)."""

KEY_CHUNK = 1024
"""Keys per chunk of the memory-efficient path's online softmax (fewer keys: one chunk)."""

QUERY_TILE = 128 * 1024
"""At most this many logits per batch row and head in one chunk (query_chunk · key_chunk): 128
queries × 1024 keys (512 KiB of float32) measured fastest forward at both the peer benchmark's
A and B attention shapes (16 × 1 × 1024 × 32: 0.025 s against 0.033 s with 256 queries; 16 × 2 ×
4096 × 32: 0.73 s against 1.14 s with 64 queries; docs/benchmarks.md)."""

_FUSED_DTYPES = (jnp.bfloat16, jnp.float16)


def attention_implementation(dtype, head_dim: int) -> str:
    """'cudnn' on a GPU for bfloat16/float16 with head_dim % 8 == 0 and head_dim <= 128, else 'xla'."""
    fused = (jax.default_backend() == "gpu" and jnp.dtype(dtype) in map(jnp.dtype, _FUSED_DTYPES)
             and head_dim % 8 == 0 and head_dim <= 128)
    return "cudnn" if fused else "xla"


def logits_bytes(q, k) -> int:
    """Bytes of the float32 logits of attention between q: [N, Sq, heads, d] and k: [N, Sk, ...]."""
    n, sq, heads, _ = q.shape
    return 4 * n * heads * sq * k.shape[1]


def chunk_sizes(n: int, heads: int, sq: int, sk: int) -> tuple[int, int]:
    """(query_chunk, key_chunk) of the memory-efficient path: key_chunk = min(Sk, KEY_CHUNK);
    query_chunk the largest power of two (at most Sq, at least 1) whose chunk logits
    N·heads·query_chunk·key_chunk·4 bytes fit in CHUNK_LOGITS_BYTES and whose
    query_chunk·key_chunk is at most QUERY_TILE."""
    key_chunk = min(sk, KEY_CHUNK)
    rows = max(1, min(CHUNK_LOGITS_BYTES // (4 * n * heads * key_chunk), QUERY_TILE // key_chunk))
    return min(sq, 2 ** int(math.log2(rows))), key_chunk


# ---------------------------------------------------------------------------------------------
# The memory-efficient kernel. Heads-major layout inside: q [N, heads, Sq, d], k, v
# [N, heads, Sk, d]; bias / mask broadcastable to [N, heads, Sq, Sk] (4-D); the Shaw tables
# a^K, a^V: [Sq, Sk, d]. A chunk of queries [q0, q0 + cq) against keys [k0, k0 + ck).


def _window(a, axis, start, size):
    """a[..., start:start + size, ...] along `axis`, or a itself where that axis broadcasts."""
    if a is None or a.shape[axis] == 1:
        return a
    return jax.lax.dynamic_slice_in_dim(a, start, size, axis)


def _chunk_logits(q, k, bias, mask, rel_key, q0, cq, k0, ck):
    """l = q kᵀ (+ q a^Kᵀ) (+ bias), masked like `jax.nn.dot_product_attention`: [N, h, cq, ck]
    in float32 (float64 for float64 inputs); q arrives scaled by 1/√d."""
    dtype = jnp.promote_types(q.dtype, jnp.float32)
    kc = _window(k, 2, k0, ck)
    logits = jnp.einsum("nhqd,nhkd->nhqk", q, kc, preferred_element_type=dtype)
    if rel_key is not None:
        a = _window(_window(rel_key, 0, q0, cq), 1, k0, ck).astype(q.dtype)
        logits = logits + jnp.einsum("nhqd,qkd->nhqk", q, a, preferred_element_type=dtype)
    if bias is not None:
        logits = logits + _window(_window(bias, 2, q0, cq), 3, k0, ck).astype(dtype)
    if mask is not None:
        large_negative = -0.7 * float(jnp.finfo(jnp.float32).max)
        logits = jnp.where(_window(_window(mask, 2, q0, cq), 3, k0, ck), logits,
                           jnp.asarray(large_negative, dtype))
    return logits


def _weighted_values(p, v, rel_value, q0, cq, k0, ck):
    """Σ_k p_qk v_k (+ Σ_k p_qk a^V_qk) over one key chunk: [N, h, cq, d], float accumulation."""
    dtype = p.dtype
    pv = p.astype(v.dtype)
    out = jnp.einsum("nhqk,nhkd->nhqd", pv, _window(v, 2, k0, ck), preferred_element_type=dtype)
    if rel_value is not None:
        a = _window(_window(rel_value, 0, q0, cq), 1, k0, ck).astype(v.dtype)
        out = out + jnp.einsum("nhqk,qkd->nhqd", pv, a, preferred_element_type=dtype)
    return out


def _query_chunk(q, k, v, bias, mask, rel_key, rel_value, q0, cq, ck, checkpoint=True):
    """Attention of the queries [q0, q0 + cq) over all keys, online softmax over key chunks:
    (output [N, h, cq, d], log-normaliser lse = m + log s [N, h, cq] in float32).

    Per key chunk c with logits l_c: m' = max(m, max_k l_c), s = s·e^{m − m'} + Σ_k e^{l_c − m'},
    o = o·e^{m − m'} + Σ_k e^{l_c − m'} v_k; at the end o / s (deferred normalisation). m is a
    stabiliser the result does not depend on, so no gradient flows through it. `checkpoint`:
    each key chunk's step under `jax.checkpoint` (for differentiating through the loop).
    """
    sk = k.shape[2]
    qc = _window(q, 2, q0, cq)

    def block(k0, size):
        logits = _chunk_logits(qc, k, bias, mask, rel_key, q0, cq, k0, size)
        return logits, jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))

    def first(k0, size):
        logits, m = block(k0, size)
        p = jnp.exp(logits - m)
        return m, jnp.sum(p, axis=-1, keepdims=True), _weighted_values(
            p, v, rel_value, q0, cq, k0, size)

    def update(carry, k0, size):
        m, s, o = carry
        logits, m_chunk = block(k0, size)
        m_new = jnp.maximum(m, m_chunk)
        p = jnp.exp(logits - m_new)
        shrink = jnp.exp(m - m_new)
        return (m_new, s * shrink + jnp.sum(p, axis=-1, keepdims=True),
                o * shrink + _weighted_values(p, v, rel_value, q0, cq, k0, size))

    full, tail = divmod(sk, ck)
    carry = first(0, ck)
    if full > 1:
        step = lambda c, k0: (update(c, k0, ck), None)  # noqa: E731
        step = jax.checkpoint(step, prevent_cse=False) if checkpoint else step
        carry, _ = jax.lax.scan(step, carry, jnp.arange(1, full) * ck)
    if tail:
        carry = update(carry, full * ck, tail)
    m, s, o = carry
    return (o / s).astype(v.dtype), (m + jnp.log(s))[..., 0]


def _chunked_heads_major(q, k, v, bias=None, mask=None, rel_key=None, rel_value=None,
                         query_chunk=None, key_chunk=None):
    """Memory-efficient attention, heads-major: q [N, h, Sq, d], k, v [N, h, Sk, d] ->
    [N, h, Sq, d]; chunk sizes default to `chunk_sizes`. Without a bias, mask or Shaw tables
    and with more than one chunk, the backward pass is `attention_backward`'s tiles
    (`_fused_attention`); otherwise automatic differentiation through `_chunk_loop`."""
    n, heads, sq, d = q.shape
    sk = k.shape[2]
    cq, ck = chunk_sizes(n, heads, sq, sk)
    cq, ck = min(sq, query_chunk or cq), min(sk, key_chunk or ck)
    q = q * jnp.asarray(1.0 / np.sqrt(d), q.dtype)
    if _fusable(bias, mask, rel_key, rel_value) and (cq, ck) != (sq, sk):
        return _fused_attention(q, k, v, cq, ck)
    return _chunk_loop(q, (k, v, bias, mask, rel_key, rel_value), cq, ck, checkpoint=True)[0]


def _fusable(bias, mask, rel_key, rel_value) -> bool:
    """Plain softmax(q kᵀ) v, which `attention_backward` differentiates: no bias, mask or Shaw tables."""
    return bias is None and mask is None and rel_key is None and rel_value is None


def _chunk_loop(q, args, cq, ck, checkpoint):
    """Query chunks of `_query_chunk` (a `lax.map`, each chunk under `jax.checkpoint` when
    `checkpoint`), the remainder one more call: (output [N, h, Sq, d], lse [N, h, Sq])."""
    n, heads, sq, d = q.shape

    def chunk(q0, size):
        return _query_chunk(q, *args, q0, size, ck, checkpoint)

    wrap = (lambda f: jax.checkpoint(f, prevent_cse=False)) if checkpoint else (lambda f: f)
    full, tail = divmod(sq, cq)
    if full == 1:
        outs = [chunk(0, cq)]
    else:
        out, lse = jax.lax.map(wrap(lambda q0: chunk(q0, cq)), jnp.arange(full) * cq)
        outs = [(jnp.moveaxis(out, 0, 2).reshape(n, heads, full * cq, d),
                 jnp.moveaxis(lse, 0, 2).reshape(n, heads, full * cq))]
    if tail:
        outs.append(wrap(lambda: chunk(full * cq, tail))())
    if len(outs) == 1:
        return outs[0]
    return tuple(jnp.concatenate(parts, axis=2) for parts in zip(*outs))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _fused_attention(q, k, v, cq, ck):
    """softmax(q kᵀ) v (q scaled) by `_chunk_loop`, differentiated by `attention_backward`:
    the forward keeps only o and lse, the backward recomputes each tile's logits once."""
    return _chunk_loop(q, (k, v, None, None, None, None), cq, ck, checkpoint=False)[0]


def _fused_attention_fwd(q, k, v, cq, ck):
    out, lse = _chunk_loop(q, (k, v, None, None, None, None), cq, ck, checkpoint=False)
    return out, (q, k, v, out, lse)


def _fused_attention_bwd(cq, ck, residuals, d_out):
    q, k, v, out, lse = residuals
    rows, keys = backward_chunk_sizes(q.shape[0], q.shape[1], q.shape[2], k.shape[2],
                                      CHUNK_LOGITS_BYTES)
    return attention_backward(q, k, v, out, lse, d_out, rows, keys)


_fused_attention.defvjp(_fused_attention_fwd, _fused_attention_bwd)


def _heads_major(x):
    return jnp.transpose(x, (0, 2, 1, 3))


def memory_efficient_attention(q, k, v, bias=None, mask=None, *, query_chunk=None,
                               key_chunk=None):
    """softmax(q kᵀ / √d + bias | mask) v like `dot_product_attention`, without materialising
    the logits: query chunks, each with an online softmax over key chunks (float32 running max
    and normaliser, normalised after the P·V matmul), each chunk under `jax.checkpoint`.

    q: [N, Sq, heads, d]; k, v: [N, Sk, heads, d]; bias, mask: broadcastable to
    [N, heads, Sq, Sk] (4-D; mask True = keep, masked logits as in `jax.nn.dot_product_attention`,
    so a fully masked row averages every key). query_chunk / key_chunk: None = `chunk_sizes`;
    any sizes work (a remainder chunk takes the rest). Returns [N, Sq, heads, d].
    """
    out = _chunked_heads_major(*map(_heads_major, (q, k, v)), bias, mask,
                               query_chunk=query_chunk, key_chunk=key_chunk)
    return _heads_major(out)


def _xla_heads_major(q, k, v, bias=None, mask=None, rel_key=None, rel_value=None):
    """Heads-major [N, heads, Sq, d] attention by the XLA paths: one chunk (plain) while the
    float32 logits take at most LOGITS_LIMIT_BYTES (FUSED_LOGITS_LIMIT_BYTES without bias, mask
    or Shaw tables), else the memory-efficient chunking."""
    n, heads, sq, _ = q.shape
    limit = FUSED_LOGITS_LIMIT_BYTES if _fusable(bias, mask, rel_key, rel_value) else LOGITS_LIMIT_BYTES
    one_chunk = 4 * n * heads * sq * k.shape[2] <= limit
    return _chunked_heads_major(q, k, v, bias, mask, rel_key, rel_value,
                                query_chunk=sq if one_chunk else None,
                                key_chunk=k.shape[2] if one_chunk else None)


def _xla_attention(q, k, v, bias=None, mask=None, rel_key=None, rel_value=None):
    """[N, Sq, heads, d] attention by the XLA paths (`_xla_heads_major`)."""
    out = _xla_heads_major(*map(_heads_major, (q, k, v)), bias, mask, rel_key, rel_value)
    return _heads_major(out)


def frame_attention(q, k, v, bias=None, mask=None, rel_key=None, rel_value=None):
    """Attention over the frame axis in the video's own layout: the plain path of the module
    docstring with the H·W positions and the heads as batch axes, so the activations are never
    transposed to frames-last and back (measured faster on the CPU, docs/benchmarks.md).

    q, k, v: [B, T, P, heads, d] (P = H·W positions, each attending over its T frames);
    bias: [heads, T, T]; mask: bool [B, T, T] (True = keep; masked as `_chunk_logits`);
    rel_key, rel_value: Shaw's a^K, a^V [T, T, d]. l = q kᵀ/√d (+ q a^Kᵀ/√d) (+ bias) in float32,
    o = Σ_j e^{l_j − m} (v_j + a^V_j) / Σ_j e^{l_j − m}. Returns [B, T, P, heads, d].
    """
    dtype = jnp.promote_types(q.dtype, jnp.float32)
    q = q * jnp.asarray(1.0 / np.sqrt(q.shape[-1]), q.dtype)
    logits = jnp.einsum("btphd,bsphd->bphts", q, k, preferred_element_type=dtype)
    if rel_key is not None:
        logits = logits + jnp.einsum("btphd,tsd->bphts", q, rel_key.astype(q.dtype),
                                     preferred_element_type=dtype)
    if bias is not None:
        logits = logits + bias.astype(dtype)[None, None]
    if mask is not None:
        large_negative = -0.7 * float(jnp.finfo(jnp.float32).max)
        logits = jnp.where(mask[:, None, None], logits, jnp.asarray(large_negative, dtype))
    p = jnp.exp(logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True)))
    total = jnp.transpose(jnp.sum(p, axis=-1), (0, 3, 1, 2))[..., None]  # [B, T, P, heads, 1]
    pv = p.astype(v.dtype)
    out = jnp.einsum("bphts,bsphd->btphd", pv, v, preferred_element_type=dtype)
    if rel_value is not None:
        out = out + jnp.einsum("bphts,tsd->btphd", pv, rel_value.astype(v.dtype),
                               preferred_element_type=dtype)
    return (out / total).astype(v.dtype)


def _attend(q, k, v, bias=None, mask=None, implementation=None):
    """Attention [N, Sq, heads, d] by the path of the module docstring."""
    impl = implementation or attention_implementation(q.dtype, q.shape[-1])
    if bias is not None:
        bias = bias.astype(q.dtype)
    if impl == "cudnn":
        try:
            return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask,
                                                implementation="cudnn")
        # cuDNN absent or refusing these shapes/dtypes/shardings: XLA computes the same thing
        except (RuntimeError, ValueError, NotImplementedError, TypeError) as err:
            warnings.warn(f"cuDNN attention unavailable ({type(err).__name__}: {err}); using XLA",
                          RuntimeWarning, stacklevel=2)
    return _xla_attention(q, k, v, bias, mask)


def dot_product_attention(q, k, v, bias=None, mask=None):
    """Twin of `vdm_ref.network.attention.dot_product_attention` (same shapes and masking): the
    path of the module docstring (cuDNN / plain / memory-efficient)."""
    return _attend(q, k, v, bias, mask)


def relative_attention(q, k, v, key_embeddings, value_embeddings, mask=None):
    """Twin of `vdm_ref.network.attention.relative_attention` (Shaw et al. 2018 [45]):
    e_ij = q_i·(k_j + a^K_ij)/√d, z_i = Σ_j α_ij (v_j + a^V_ij), by the plain or the
    memory-efficient path (module docstring). q, k, v: [N, S, heads, d]; a^K, a^V: [S, S, d];
    mask broadcastable to [N, heads, S, S]. Returns [N, S, heads, d]."""
    return _xla_attention(q, k, v, None, mask, key_embeddings, value_embeddings)


# ---------------------------------------------------------------------------------------------
# Modules


def _self_attention(block, y, attend):
    """Out(attend(y Wq, y Wk, y Wv)) for y: [N, S, C], heads of block.head_dim channels."""
    n, s, c = y.shape
    heads = c // block.head_dim
    q, k, v = (f(y).reshape(n, s, heads, block.head_dim) for f in (block.q, block.k, block.v))
    return block.out(attend(q, k, v).reshape(n, s, c))


def _heads_major_self_attention(block, y):
    """The same with q, k, v produced heads-major [N, heads, S, d] by the projections and the
    output projection reading heads-major (no transposes of the activations), by the XLA paths."""
    c = y.shape[-1]
    heads, d = c // block.head_dim, block.head_dim

    def project(f):
        out = jnp.einsum("nsc,chd->nhsd", y, f.weight.astype(y.dtype).reshape(c, heads, d))
        return out if f.bias is None else out + f.bias.astype(y.dtype).reshape(1, heads, 1, d)

    o = _xla_heads_major(project(block.q), project(block.k), project(block.v))
    out = jnp.einsum("nhsd,hdc->nsc", o, block.out.weight.astype(y.dtype).reshape(heads, d, c))
    return out if block.out.bias is None else out + block.out.bias.astype(y.dtype).reshape(1, 1, c)


def _fused_qkv(block, y):
    """y Wq, y Wk, y Wv as one matmul with the weights concatenated: [..., C] -> three [..., C]."""
    layers = (block.q, block.k, block.v)
    out = y @ jnp.concatenate([f.weight for f in layers], axis=1).astype(y.dtype)
    if all(f.bias is not None for f in layers):
        out = out + _bias(jnp.concatenate([f.bias for f in layers]), out)
    elif any(f.bias is not None for f in layers):
        return tuple(f(y) for f in layers)
    return tuple(jnp.split(out, 3, axis=-1))


def _attention_params(block) -> dict:
    return {"norm": block.norm.to_params(), **{n: getattr(block, n).to_params()
                                               for n in ("q", "k", "v", "out")}}


def _attention_fields(params, groups):
    return (GroupNorm.from_params(params["norm"], groups=groups),
            *(Dense.from_params(params[n]) for n in ("q", "k", "v", "out")))


class SpatialAttention(eqx.Module):
    """Spatial self-attention block x + Out(Attn(GN(x))) (Sec. 3), frames as a batch axis.

    Twin of `vdm_ref.network.attention.spatial_attention`.
    """

    norm: GroupNorm
    q: Dense
    k: Dense
    v: Dense
    out: Dense
    head_dim: int = eqx.field(static=True)
    implementation: str | None = eqx.field(static=True, default=None)

    @classmethod
    def from_params(cls, params: dict, *, head_dim: int, groups: int,
                    implementation: str | None = None) -> SpatialAttention:
        """From {"norm", "q", "k", "v", "out"}."""
        return cls(*_attention_fields(params, groups), head_dim, implementation)

    def to_params(self) -> dict:
        return _attention_params(self)

    def __call__(self, x: Float[Array, "b t h w c"]) -> Float[Array, "b t h w c"]:
        b, t, h, w, c = x.shape
        y = self.norm(x).reshape(b * t, h * w, c)
        if (self.implementation or attention_implementation(y.dtype, self.head_dim)) == "xla":
            return x + _heads_major_self_attention(self, y).reshape(x.shape)
        y = _self_attention(self, y, lambda q, k, v: _attend(q, k, v, implementation=self.implementation))
        return x + y.reshape(x.shape)


class TemporalAttention(eqx.Module):
    """Temporal self-attention block x + Out(Attn(GN(x))) (Sec. 3) over frames, space as a
    batch axis, with the relative position encoding and the joint image-video mask.

    The encoding follows the parameters: "rel_bias" [heads, 2D + 1] (temporal_position "bias",
    logits + B[h, i, j]) or "rel_key", "rel_value" [2D + 1, head_dim] ("shaw", Sec. 3's
    relative position embeddings [45] added to keys and values). Twin of
    `vdm_ref.network.attention.temporal_attention`.
    """

    norm: GroupNorm
    q: Dense
    k: Dense
    v: Dense
    out: Dense
    rel_bias: Float[Array, "heads width"] | None
    rel_key: Float[Array, "width head_dim"] | None
    rel_value: Float[Array, "width head_dim"] | None
    head_dim: int = eqx.field(static=True)
    implementation: str | None = eqx.field(static=True, default=None)

    @classmethod
    def from_params(cls, params: dict, *, head_dim: int, groups: int,
                    implementation: str | None = None) -> TemporalAttention:
        """From {"norm", "q", "k", "v", "out"} and {"rel_bias": [heads, 2D + 1]} or
        {"rel_key", "rel_value": [2D + 1, head_dim]}."""
        tables = [jnp.asarray(params[n]) if n in params else None
                  for n in ("rel_bias", "rel_key", "rel_value")]
        if ("rel_bias" in params) == ("rel_key" in params and "rel_value" in params):
            raise ValueError(f"temporal attention params have keys {sorted(params)}: expected "
                             "'rel_bias' or both 'rel_key' and 'rel_value'")
        return cls(*_attention_fields(params, groups), *tables, head_dim, implementation)

    def to_params(self) -> dict:
        if self.rel_bias is None:
            return {**_attention_params(self), "rel_key": self.rel_key,
                    "rel_value": self.rel_value}
        return {**_attention_params(self), "rel_bias": self.rel_bias}

    def __call__(self, x: Float[Array, "b t h w c"],
                 frame_mask: Bool[Array, "b t"] | None = None) -> Float[Array, "b t h w c"]:
        b, t, h, w, c = x.shape
        heads = c // self.head_dim
        impl = "xla" if self.rel_bias is None else (
            self.implementation or attention_implementation(x.dtype, self.head_dim))
        if impl == "xla" and 4 * b * h * w * heads * t * t <= LOGITS_LIMIT_BYTES:
            return x + self._in_video_layout(self.norm(x).reshape(b, t, h * w, c), frame_mask
                                             ).reshape(x.shape)
        y = self.norm(x).transpose(0, 2, 3, 1, 4).reshape(b * h * w, t, c)
        mask = None
        if frame_mask is not None:
            keep = temporal_attention_mask(jnp.asarray(frame_mask))[:, None, None]  # [b,1,1,t,t]
            mask = jnp.broadcast_to(keep, (b, h * w, 1, t, t)).reshape(b * h * w, 1, t, t)
        if self.rel_bias is None:
            a_key, a_value = (relative_position_embeddings(table, t).astype(y.dtype)
                              for table in (self.rel_key, self.rel_value))

            def attend(q, k, v):
                return relative_attention(q, k, v, a_key, a_value, mask)
        else:
            bias = relative_position_bias(self.rel_bias, t)[None]  # [1, heads, t, t]

            def attend(q, k, v):
                return _attend(q, k, v, bias, mask, self.implementation)
        y = _self_attention(self, y, attend)
        return x + y.reshape(b, h, w, t, c).transpose(0, 3, 1, 2, 4)

    def _in_video_layout(self, y, frame_mask):
        """Out(frame_attention(...)) for y: [B, T, P, C], the plain path (`frame_attention`)."""
        b, t, p, c = y.shape
        q, k, v = (a.reshape(b, t, p, c // self.head_dim, self.head_dim) for a in _fused_qkv(self, y))
        mask = None if frame_mask is None else temporal_attention_mask(jnp.asarray(frame_mask))
        if self.rel_bias is None:
            a_key, a_value = (relative_position_embeddings(table, t)
                              for table in (self.rel_key, self.rel_value))
            o = frame_attention(q, k, v, mask=mask, rel_key=a_key, rel_value=a_value)
        else:
            o = frame_attention(q, k, v, relative_position_bias(self.rel_bias, t), mask)
        return self.out(o.reshape(b, t, p, c))


class AttentionPooling(eqx.Module):
    """Attention pooling of caption tokens (Sec. 4.3): the masked mean token queries the valid
    tokens; bias-free projections, an all-padded caption pools to 0. Twin of
    `vdm_ref.network.attention.attention_pooling`."""

    q: Dense
    k: Dense
    v: Dense
    out: Dense
    head_dim: int = eqx.field(static=True)

    @classmethod
    def from_params(cls, params: dict, *, head_dim: int) -> AttentionPooling:
        """From {"q", "k", "v": {"w": [D_text, E]}, "out": {"w": [E, E]}}."""
        return cls(*(Dense.from_params(params[n]) for n in ("q", "k", "v", "out")), head_dim)

    def to_params(self) -> dict:
        return {n: getattr(self, n).to_params() for n in ("q", "k", "v", "out")}

    def __call__(self, tokens: Float[Array, "b l d"], token_mask: Bool[Array, "b l"]
                 ) -> Float[Array, "b e"]:
        b, l, _ = tokens.shape
        m = token_mask.astype(tokens.dtype)
        count = jnp.maximum(jnp.sum(m, axis=1), 1.0)
        mean = jnp.sum(tokens * m[:, :, None], axis=1) / count[:, None]
        e = self.q.weight.shape[1]
        heads = e // self.head_dim
        q = self.q(mean).reshape(b, 1, heads, self.head_dim)
        k = self.k(tokens).reshape(b, l, heads, self.head_dim)
        v = self.v(tokens).reshape(b, l, heads, self.head_dim)
        o = _attend(q, k, v, mask=token_mask.reshape(b, 1, 1, l), implementation="xla")
        has_token = jnp.any(token_mask, axis=1).astype(o.dtype)  # all padded -> 0
        return self.out(o.reshape(b, e) * has_token[:, None])


def spatial_attention(params, x, *, head_dim, groups):
    """Twin of `vdm_ref.network.attention.spatial_attention`."""
    return SpatialAttention.from_params(params, head_dim=head_dim, groups=groups)(x)


def temporal_attention(params, x, frame_mask=None, *, head_dim, groups):
    """Twin of `vdm_ref.network.attention.temporal_attention`."""
    return TemporalAttention.from_params(params, head_dim=head_dim, groups=groups)(x, frame_mask)


def attention_pooling(params, tokens, token_mask, *, head_dim):
    """Twin of `vdm_ref.network.attention.attention_pooling`."""
    return AttentionPooling.from_params(params, head_dim=head_dim)(tokens, token_mask)
