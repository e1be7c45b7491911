"""The backward pass of the memory-efficient attention, tile by tile (FlashAttention's
backward, Dao et al. 2022, Alg. 4; in JAX loops for the CPU).

Given the forward's output o = softmax(q kᵀ) v and its row log-normalisers
lse_i = log Σ_j exp(q_i·k_j) (q arrives scaled by 1/√d), and the output cotangent do:

    D_i = Σ_c do_ic o_ic;   per tile of queries × keys:  p_ij = exp(q_i·k_j − lse_i),
    dv_j += Σ_i p_ij do_i;   ds_ij = p_ij (do_i·v_j − D_i);   dq_i += Σ_j ds_ij k_j;
    dk_j += Σ_i ds_ij q_i.

Each tile's logits are computed once more (not twice, as differentiating the chunked forward
under `jax.checkpoint` does: the query chunk's recompute, then the key chunk's), and no tile's
logits outlive it: the pass holds dq, dk, dv and one tile. Measured on the 2-core CPU at the
64x64 spatial attention of the peer benchmark's shape B (16 frames, 2 heads of 32, 4096 tokens):
forward + backward 2.36 s against 3.49 s by automatic differentiation (docs/benchmarks.md).
Tall, narrow tiles of 128K logits per batch row and head measured fastest there and at the
32×32 attention of shape A (`backward_chunk_sizes`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["BACKWARD_KEY_CHUNK", "BACKWARD_TILE", "attention_backward", "backward_chunk_sizes"]

BACKWARD_KEY_CHUNK = 64
"""Keys per backward tile. At shape B's 4096 tokens (16 frames × 2 heads), tiles of 1024-2048
queries × 64 keys took 2.36-2.38 s for forward + backward, 128 × 1024 2.66 s, 512 × 256 2.51 s."""


BACKWARD_TILE = 128 * 1024
"""At most this many logits per batch row and head in one backward tile (rows · keys). Both
shapes measured fastest at it: 2048 × 64 at B's 64×64 attention, 1024 × 128 at A's 32×32 (1024
queries × 16 frames × 1 head: 0.080 s forward + backward against 0.089 s with 1024 × 64 and
0.095 s with 1024 × 256)."""


def _pow2_floor(x: int) -> int:
    return 2 ** int(math.log2(max(1, x)))


def backward_chunk_sizes(n: int, heads: int, sq: int, sk: int, tile_bytes: int) -> tuple[int, int]:
    """(query rows, keys) of a backward tile. Keys = min(Sk, BACKWARD_KEY_CHUNK); rows the largest
    power of two (at most Sq, at least 1) whose float32 tile N·heads·rows·keys·4 fits tile_bytes
    and rows·keys ≤ BACKWARD_TILE. Where Sq leaves the tile short of BACKWARD_TILE, the keys widen
    (powers of two) as far as Sk, BACKWARD_TILE and tile_bytes allow."""
    keys = min(sk, BACKWARD_KEY_CHUNK)
    rows = min(sq, _pow2_floor(tile_bytes // (4 * n * heads * keys)), _pow2_floor(BACKWARD_TILE // keys))
    wider = min(_pow2_floor(BACKWARD_TILE // rows), _pow2_floor(tile_bytes // (4 * n * heads * rows)))
    return rows, min(sk, max(keys, wider))


def _slice(a, start, size):
    return jax.lax.dynamic_slice_in_dim(a, start, size, 2)


def _add_at(a, start, update):
    return jax.lax.dynamic_update_slice_in_dim(a, _slice(a, start, update.shape[2]) + update, start, 2)


def attention_backward(q, k, v, out, lse, d_out, rows: int, keys: int):
    """(dq, dk, dv) of o = softmax(q kᵀ) v by the tiles of the module docstring.

    q: [N, h, Sq, d] (already scaled), k, v: [N, h, Sk, d], out, d_out: [N, h, Sq, d], lse:
    [N, h, Sq] float32; tiles of `rows` queries × `keys` keys (remainders take the rest). The
    logits, p and ds are float32; the gradients come back in their inputs' dtypes.
    """
    f32 = jnp.promote_types(q.dtype, jnp.float32)
    sq, sk = q.shape[2], k.shape[2]
    delta = jnp.sum(d_out.astype(f32) * out.astype(f32), axis=-1, keepdims=True)
    lse = lse[..., None].astype(f32)

    def tile(carry, q0, nq, k0, nk):
        dq_rows, dk, dv = carry
        qc, doc = _slice(q, q0, nq), _slice(d_out, q0, nq)
        kc, vc = _slice(k, k0, nk), _slice(v, k0, nk)
        logits = jnp.einsum("nhqd,nhkd->nhqk", qc, kc, preferred_element_type=f32)
        p = jnp.exp(logits - _slice(lse, q0, nq))
        dv = _add_at(dv, k0, jnp.einsum("nhqk,nhqd->nhkd", p.astype(v.dtype), doc,
                                        preferred_element_type=f32))
        dp = jnp.einsum("nhqd,nhkd->nhqk", doc, vc, preferred_element_type=f32)
        ds = (p * (dp - _slice(delta, q0, nq))).astype(q.dtype)
        dk = _add_at(dk, k0, jnp.einsum("nhqk,nhqd->nhkd", ds, qc, preferred_element_type=f32))
        dq_rows = dq_rows + jnp.einsum("nhqk,nhkd->nhqd", ds, kc, preferred_element_type=f32)
        return dq_rows, dk, dv

    def query_rows(dk, dv, q0, nq):
        """dq of queries [q0, q0 + nq) over every key; their share of dk, dv added."""
        carry = (jnp.zeros(q.shape[:2] + (nq, q.shape[3]), f32), dk, dv)
        full, tail = divmod(sk, keys)
        if full:
            carry, _ = jax.lax.scan(lambda c, k0: (tile(c, q0, nq, k0, keys), None), carry,
                                    jnp.arange(full) * keys)
        if tail:
            carry = tile(carry, q0, nq, full * keys, tail)
        return carry

    dk = jnp.zeros(k.shape, f32)
    dv = jnp.zeros(v.shape, f32)
    parts = []
    full, tail = divmod(sq, rows)
    if full:
        def body(c, q0):
            dq_rows, dk, dv = query_rows(*c, q0, rows)
            return (dk, dv), dq_rows

        (dk, dv), stacked = jax.lax.scan(body, (dk, dv), jnp.arange(full) * rows)
        parts.append(jnp.moveaxis(stacked, 0, 2).reshape(q.shape[:2] + (full * rows, q.shape[3])))
    if tail:
        dq_rows, dk, dv = query_rows(dk, dv, full * rows, tail)
        parts.append(dq_rows)
    dq = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=2)
    return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype)
