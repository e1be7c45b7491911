"""The layout-preserving XLA paths of vdm_fast.network.attention (issue 14) against the
transposing ones they replaced on the CPU.

- `frame_attention` (temporal attention in the video's own [B, T, P, heads, d] layout) computes
  what the plain path computes on the frames-last [B·P, T, heads, d] layout: with the relative
  bias, the joint image-video mask (an image frame sees only itself), Shaw's key/value tables;
  values and gradients.
- `SpatialAttention` with q, k, v produced heads-major by the projections computes what the
  [N, S, heads, d] path computes (values and gradients of every parameter).

Both sides compute in float32 with the same logits and sum in another order: observed
max |Δ| ≤ 1e-6 · max(1, max |expected|); asserted 4e-6 (the tolerance of
tests/test_attention_memory.py), far below a wrong axis, transpose or mask (O(0.1)).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vdm_fast.network.attention as fa
from vdm_ref.network.attention import relative_position_embeddings, temporal_attention_mask

TOL = 4e-6
B, T, P, HEADS, D = 2, 5, 6, 2, 4


def assert_close(out, expected, tol=TOL):
    out, expected = np.asarray(out, np.float64), np.asarray(expected, np.float64)
    scale = max(1.0, float(np.max(np.abs(expected))))
    err = float(np.max(np.abs(out - expected)))
    assert err <= tol * scale, f"max |layout-preserving - transposing| = {err:.3g} > {tol} * {scale:.3g}"


def _frames_last(a):
    """[B, T, P, heads, d] -> [B·P, T, heads, d], the layout of the transposing path."""
    return jnp.transpose(a, (0, 2, 1, 3, 4)).reshape(B * P, T, HEADS, D)


def _transposing(q, k, v, bias, mask, rel_key, rel_value):
    """The frames-last path: positions into the batch, `_xla_attention`, and back."""
    big_mask = None if mask is None else jnp.repeat(mask, P, axis=0)[:, None]  # [B·P, 1, T, T]
    out = fa._xla_attention(*map(_frames_last, (q, k, v)), None if bias is None else bias[None],
                            big_mask, rel_key, rel_value)
    return jnp.transpose(out.reshape(B, P, T, HEADS, D), (0, 2, 1, 3, 4))


def _inputs(seed):
    rng = np.random.default_rng(seed)
    f32 = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)  # noqa: E731
    q, k, v = (f32(B, T, P, HEADS, D) for _ in range(3))
    frame_mask = jnp.asarray(np.arange(T)[None].repeat(B, 0) >= np.array([[3], [5]]))  # 2 + 0 image frames
    table = f32(7, D)  # Shaw's a^K, a^V over offsets −3..3
    return q, k, v, f32(HEADS, T, T), temporal_attention_mask(frame_mask), table


@pytest.mark.parametrize("encoding", ["bias", "shaw", "none"])
@pytest.mark.parametrize("masked", [False, True])
def test_frame_attention_is_the_transposing_path_values_and_gradients(encoding, masked):
    q, k, v, bias, mask, table = _inputs(0)
    mask = mask if masked else None
    a_key = relative_position_embeddings(table, T) if encoding == "shaw" else None
    a_value = relative_position_embeddings(table[::-1], T) if encoding == "shaw" else None
    bias = bias if encoding == "bias" else None
    w = jnp.asarray(np.random.default_rng(1).standard_normal(q.shape), jnp.float32)

    def loss(attend):
        return jax.jit(jax.value_and_grad(lambda q, k, v: jnp.sum(w * attend(q, k, v, bias, mask, a_key, a_value)),
                                          argnums=(0, 1, 2)))

    (value, grads), (want, want_grads) = loss(fa.frame_attention)(q, k, v), loss(_transposing)(q, k, v)
    assert_close(value, want)
    for g, g_want in zip(grads, want_grads):
        assert_close(g, g_want)
    out = fa.frame_attention(q, k, v, bias, mask, a_key, a_value)
    assert out.shape == q.shape and out.dtype == jnp.float32
    if masked:  # example 0's frame 3 is an image frame: it attends to itself only, output v (+ a^V_33)
        own = np.asarray(v[0, 3]) + (0.0 if a_value is None else np.asarray(a_value[3, 3]))
        np.testing.assert_allclose(np.asarray(out[0, 3]), np.asarray(own), atol=1e-6)

def test_spatial_attention_heads_major_projections_are_the_transposing_path():
    rng = np.random.default_rng(2)
    c, head_dim = 8, 4
    dense = lambda: {"w": rng.standard_normal((c, c)) / np.sqrt(c), "b": rng.standard_normal(c)}  # noqa: E731
    params = {"norm": {"scale": 1 + 0.1 * rng.standard_normal(c), "offset": 0.1 * rng.standard_normal(c)},
              **{n: dense() for n in ("q", "k", "v", "out")}}
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    block = fa.SpatialAttention.from_params(params, head_dim=head_dim, groups=2)
    y = jnp.asarray(rng.standard_normal((3, 10, c)), jnp.float32)  # [N, S, C]
    w = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)

    def transposing(blk, y):
        return fa._self_attention(blk, y, fa._xla_attention)

    def grads(fn):
        return jax.jit(jax.value_and_grad(lambda blk, y: jnp.sum(w * fn(blk, y)), argnums=(0, 1)))(block, y)

    (value, (g_block, g_y)), (want, (w_block, w_y)) = grads(fa._heads_major_self_attention), grads(transposing)
    assert_close(value, want)
    assert_close(g_y, w_y)
    for g, g_want in zip(jax.tree.leaves(g_block), jax.tree.leaves(w_block)):
        assert_close(g, g_want)
