"""The memory-efficient attention path of vdm_fast.network.attention (issue 14).

- It agrees with the plain path (`jax.nn.dot_product_attention`, which materialises the
  logits) for any shapes and chunk sizes, chunks that do not divide the token counts, a bias
  (the temporal relative bias) and a mask with fully masked rows, values and gradients.
- Without bias or mask its backward pass is `attention_backward`'s tiles (a custom VJP), and
  its gradients agree with the plain path's, remainder tiles included.
- It never holds an array as large as the logits, in the forward or the backward pass (the
  jaxpr, nested scans and rematerialised chunks included), while the plain path does.
- The blocks pick it by themselves above `LOGITS_LIMIT_BYTES` / `FUSED_LOGITS_LIMIT_BYTES`
  (lowered here by monkeypatch)
  and then compute what the plain path computes, joint image-video mask included.
- Slow (`-m slow`, ~20 s): a forward + backward of a spatial attention block at 64x64 = 4096
  tokens, each path in its own process, peak RSS measured (`resource.getrusage`).

Tolerance. Both paths compute in float32 (unit roundoff 6e-8) with the same logits; the
chunked one sums exponentials and P·V products in another order and normalises after the
P·V matmul. Observed max |chunked − plain| ≤ 5e-7 · max(1, max |plain|) on these draws;
asserted TOL = 4e-6 relative (8x headroom), far below a wrong chunk offset, mask or
renormalisation (O(0.1) and more).
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vdm_fast.network.attention as fa

TOL = 4e-6


def assert_close(out, expected, tol=TOL):
    out, expected = np.asarray(out, np.float64), np.asarray(expected, np.float64)
    scale = max(1.0, float(np.max(np.abs(expected))))
    err = float(np.max(np.abs(out - expected)))
    assert err <= tol * scale, f"max |chunked - plain| = {err:.3g} > {tol} * {scale:.3g}"


def draw(seed, n, sq, sk, heads, d, bias_shape, mask_shape, masked_row):
    rng = np.random.default_rng(seed)
    f32 = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
    q, k, v = f32(n, sq, heads, d), f32(n, sk, heads, d), f32(n, sk, heads, d)
    bias = None if bias_shape is None else f32(*bias_shape)
    mask = None
    if mask_shape is not None:
        mask = rng.random(mask_shape) < 0.6
        if masked_row:  # a query that sees no key: both paths average every key uniformly
            mask[..., rng.integers(mask.shape[2]), :] = False
        mask = jnp.asarray(mask)
    return q, k, v, bias, mask


# one compile per shape (eager dispatch would compile every op of the chunk loops separately)
_chunked = jax.jit(fa.memory_efficient_attention, static_argnames=("query_chunk", "key_chunk"))


@st.composite
def problems(draw_):
    n, heads = draw_(st.integers(1, 3)), draw_(st.integers(1, 3))
    sq, sk, d = draw_(st.integers(1, 40)), draw_(st.integers(1, 40)), draw_(st.integers(1, 8))
    full = (n, heads, sq, sk)
    bias_shape = draw_(st.sampled_from([None, (1, heads, sq, sk), full]))
    mask_shape = draw_(st.sampled_from([None, (n, 1, sq, sk), full]))
    chunks = (draw_(st.integers(1, sq)), draw_(st.integers(1, sk)))
    return (n, sq, sk, heads, d, bias_shape, mask_shape, draw_(st.booleans())), chunks


@settings(max_examples=8)
@given(problem=problems(), seed=st.integers(0, 2**16))
def test_chunked_attention_agrees_with_plain_path(problem, seed):
    shape, (query_chunk, key_chunk) = problem
    q, k, v, bias, mask = draw(seed, *shape)
    plain = jax.jit(jax.nn.dot_product_attention)(q, k, v, bias=bias, mask=mask)
    out = _chunked(q, k, v, bias, mask, query_chunk=query_chunk, key_chunk=key_chunk)
    assert out.shape == plain.shape and out.dtype == jnp.float32
    assert_close(out, plain)


def test_chunked_attention_gradients_agree_with_plain_path():
    # chunks 8 x 7 over 37 queries x 29 keys: several full chunks and a remainder each way
    q, k, v, bias, mask = draw(0, 2, 37, 29, 2, 4, (1, 2, 37, 29), (2, 1, 37, 29), True)
    w = jnp.asarray(np.random.default_rng(1).standard_normal(q.shape), jnp.float32)

    def loss(attend):
        return lambda q, k, v, b: jnp.sum(w * attend(q, k, v, b))

    plain = jax.jit(jax.grad(loss(lambda q, k, v, b: jax.nn.dot_product_attention(
        q, k, v, bias=b, mask=mask)), argnums=(0, 1, 2, 3)))(q, k, v, bias)
    chunked = jax.jit(jax.grad(loss(lambda q, k, v, b: fa.memory_efficient_attention(
        q, k, v, b, mask, query_chunk=8, key_chunk=7)), argnums=(0, 1, 2, 3)))(q, k, v, bias)
    for g_chunked, g_plain in zip(chunked, plain):
        assert_close(g_chunked, g_plain)


@pytest.mark.parametrize("sq, sk, backward_keys, tile_rows", [(37, 29, 6, 8), (32, 64, 64, 32), (5, 3, 2, 2)])
def test_fused_backward_agrees_with_the_plain_gradients(sq, sk, backward_keys, tile_rows, monkeypatch):
    # Without bias or mask the chunked path is differentiated by `attention_backward`'s tiles:
    # forward chunks 8 x 7 and backward tiles `tile_rows` x `backward_keys`, remainders both ways.
    import vdm_fast.network.attention_backward as fab

    n, heads, d = 2, 2, 4
    q, k, v, _, _ = draw(4, n, sq, sk, heads, d, None, None, False)
    w = jnp.asarray(np.random.default_rng(5).standard_normal(q.shape), jnp.float32)
    monkeypatch.setattr(fab, "BACKWARD_KEY_CHUNK", backward_keys)
    monkeypatch.setattr(fa, "CHUNK_LOGITS_BYTES", 4 * n * heads * tile_rows * backward_keys)
    assert fab.backward_chunk_sizes(n, heads, sq, sk, fa.CHUNK_LOGITS_BYTES) == (
        min(sq, tile_rows), min(sk, backward_keys))

    def grads(attend):
        return jax.jit(jax.grad(lambda q, k, v: jnp.sum(w * attend(q, k, v)), argnums=(0, 1, 2)))(q, k, v)

    def fused(q, k, v):
        return fa.memory_efficient_attention(q, k, v, query_chunk=8, key_chunk=7)

    for g_fused, g_plain in zip(grads(fused), grads(jax.nn.dot_product_attention)):
        assert_close(g_fused, g_plain)


def test_fused_backward_is_taken_exactly_without_bias_mask_or_one_chunk():
    q, k, v, bias, mask = draw(6, 1, 16, 16, 1, 4, (1, 1, 16, 16), (1, 1, 16, 16), False)

    def jaxpr(attend):
        return str(jax.make_jaxpr(attend)(q, k, v))

    assert "custom_vjp" in jaxpr(lambda q, k, v: fa.memory_efficient_attention(q, k, v, query_chunk=4))
    assert "custom_vjp" not in jaxpr(lambda q, k, v: fa.memory_efficient_attention(q, k, v, bias, query_chunk=4))
    assert "custom_vjp" not in jaxpr(lambda q, k, v: fa.memory_efficient_attention(q, k, v, None, mask, query_chunk=4))
    # one chunk (the plain path of the blocks) stays plain automatic differentiation
    assert "custom_vjp" not in jaxpr(lambda q, k, v: fa.memory_efficient_attention(q, k, v, query_chunk=16, key_chunk=16))


def _largest_array(jaxpr) -> int:
    """The most elements of any value a jaxpr computes, nested jaxprs (scan, remat, pjit,
    custom rules) included."""
    largest = 0
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            largest = max(largest, int(np.prod(getattr(var.aval, "shape", ()))))
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    largest = max(largest, _largest_array(inner))
    return largest


def test_chunked_path_never_holds_the_logits_forward_or_backward(monkeypatch):
    n, s, heads, d = 2, 512, 2, 8
    logits = n * heads * s * s
    q, k, v, _, _ = draw(2, n, s, s, heads, d, None, None, False)
    monkeypatch.setattr(fa, "CHUNK_LOGITS_BYTES", 4 * logits // 16)  # a 16th of the logits

    def value_and_grad(attend):
        return jax.make_jaxpr(jax.value_and_grad(
            lambda q, k, v: jnp.sum(jnp.sin(attend(q, k, v))), argnums=(0, 1, 2)))(q, k, v).jaxpr

    chunked = _largest_array(value_and_grad(fa.memory_efficient_attention))
    plain = _largest_array(value_and_grad(jax.nn.dot_product_attention))
    assert plain >= logits
    assert chunked <= logits // 16, (chunked, logits)


def _attention_params(c, seed, temporal=False, shaw=False):
    rng = np.random.default_rng(seed)
    dense = lambda: {"w": rng.standard_normal((c, c)) / np.sqrt(c), "b": rng.standard_normal(c)}
    p = {"norm": {"scale": 1 + 0.1 * rng.standard_normal(c), "offset": rng.standard_normal(c)},
         "q": dense(), "k": dense(), "v": dense(), "out": dense()}
    if temporal and shaw:
        p["rel_key"], p["rel_value"] = rng.standard_normal((2, 7, 4))
    elif temporal:
        p["rel_bias"] = rng.standard_normal((c // 4, 7))
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), p)


@pytest.mark.parametrize("kind", ["spatial", "temporal", "temporal-shaw"])
def test_blocks_switch_to_the_chunked_path_above_the_limit(kind, monkeypatch):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((2, 7, 6, 6, 8)), jnp.float32)  # 36 tokens, 7 frames
    frame_mask = jnp.asarray([[False] * 4 + [True] * 3, [False, True] * 3 + [False]])
    params = _attention_params(8, 3, temporal=kind != "spatial", shaw=kind == "temporal-shaw")
    if kind == "spatial":
        block = fa.SpatialAttention.from_params(params, head_dim=4, groups=2)
        run = lambda: block(x)
    else:
        block = fa.TemporalAttention.from_params(params, head_dim=4, groups=2)
        run = lambda: block(x, frame_mask)
    plain = run()
    monkeypatch.setattr(fa, "LOGITS_LIMIT_BYTES", 0)  # every attention is now "too large"
    monkeypatch.setattr(fa, "FUSED_LOGITS_LIMIT_BYTES", 0)
    monkeypatch.setattr(fa, "CHUNK_LOGITS_BYTES", 4 * 2 * 36 * 5)  # several query chunks
    monkeypatch.setattr(fa, "KEY_CHUNK", 5)  # 36 = 7·5 + 1 and 7 = 5 + 2 keys: remainders
    jaxpr = jax.make_jaxpr(run)().jaxpr
    tokens = 36 if kind == "spatial" else 7
    assert _largest_array(jaxpr) < 2 * 72 * tokens * tokens  # no [N, heads, S, S] logits
    assert_close(run(), plain)


_RSS_CHILD = textwrap.dedent("""
    import json, resource, sys
    import jax, jax.numpy as jnp, numpy as np, equinox as eqx
    import vdm_fast.network.attention as fa
    fa.LOGITS_LIMIT_BYTES = fa.FUSED_LOGITS_LIMIT_BYTES = {"plain": 2**62, "chunked": 0}[sys.argv[1]]
    c = 16
    rng = np.random.default_rng(0)
    dense = lambda: {"w": rng.standard_normal((c, c)) / 4, "b": np.zeros(c)}
    p = {"norm": {"scale": np.ones(c), "offset": np.zeros(c)}, "q": dense(), "k": dense(),
         "v": dense(), "out": dense()}
    p = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), p)
    block = fa.SpatialAttention.from_params(p, head_dim=16, groups=8)
    x = jnp.asarray(rng.standard_normal((1, 2, 64, 64, c)), jnp.float32)
    step = eqx.filter_jit(eqx.filter_value_and_grad(lambda m, x: jnp.mean(m(x) ** 2)))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loss, grads = step(block, x)
    jax.block_until_ready(grads)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_mib": (peak - before) / 1024, "loss": float(loss)}))
""")


@pytest.mark.slow
def test_spatial_attention_at_4096_tokens_trains_in_a_fraction_of_the_plain_memory():
    # B = 1, T = 2, C = 16, one head: the logits take 128 MiB (float32), under the default
    # limit, so each child sets the limit to force its path. Measured on the 2-core CPU: peak
    # RSS growth (compile included) 200-207 MiB chunked, 578-581 MiB plain; a trivial block's
    # compile alone grows RSS by ~70-80 MiB.
    out = {}
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    for mode in ("chunked", "plain"):
        run = subprocess.run([sys.executable, "-c", _RSS_CHILD, mode], capture_output=True,
                             text=True, timeout=600, env=env)
        assert run.returncode == 0, run.stderr[-2000:]
        out[mode] = json.loads(run.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(out["chunked"]["loss"], out["plain"]["loss"], rtol=1e-5)
    assert out["chunked"]["growth_mib"] < 0.5 * out["plain"]["growth_mib"], out
    assert out["chunked"]["growth_mib"] < 300, out


def test_tiles_hold_at_most_128k_logits_per_row_and_head_and_fit_the_chunk_bytes():
    # the measured choices (docs/benchmarks.md): forward 128 x 1024, backward 2048 x 64 at the
    # peer benchmark's 64x64 attention, 1024 x 128 at its 32x32 one; never above CHUNK_LOGITS_BYTES
    import vdm_fast.network.attention_backward as fab

    assert fa.chunk_sizes(16, 1, 1024, 1024) == (128, 1024)
    assert fa.chunk_sizes(16, 2, 4096, 4096) == (128, 1024)
    assert fa.chunk_sizes(16, 4, 1024, 1024) == (64, 1024)  # the bytes bound first
    limit = fa.CHUNK_LOGITS_BYTES
    assert fab.backward_chunk_sizes(16, 2, 4096, 4096, limit) == (2048, 64)
    assert fab.backward_chunk_sizes(16, 1, 1024, 1024, limit) == (1024, 128)
    for n, heads, sq, sk in [(16, 4, 1024, 1024), (80, 4, 64, 64), (1, 1, 100, 3), (64, 8, 4096, 333)]:
        rows, keys = fab.backward_chunk_sizes(n, heads, sq, sk, limit)
        assert 1 <= rows <= sq and 1 <= keys <= sk
        assert rows * keys <= fab.BACKWARD_TILE and 4 * n * heads * rows * keys <= max(limit, 4 * n * heads * keys)
