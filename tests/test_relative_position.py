"""Sec. 3's relative position embeddings [45] (Shaw et al. 2018) in temporal attention:
`UNetConfig.temporal_position = "shaw"`, beside the default scalar bias ("bias").

    e_ij = q_i·(k_j + a^K_ij)/√d,  z_i = Σ_j α_ij (v_j + a^V_ij),  a_ij = w_{clip(j − i, k)}.

What must hold:
- vdm_fast (float32, chunked kernel) agrees with vdm_ref (NumPy float64), layer and network,
  and the reference matches the equation written out as loops.
- Shift equivariance: the encoding depends on j − i only, so a video shifted later in the
  sequence (independent image frames of a joint batch placed before it) gives the same outputs
  shifted, through the whole network, for either encoding and any clipping distance.
- Clipping: keys at offsets beyond ±k share one embedding, so permuting them among themselves
  leaves the query's output unchanged.
- The network runs on other frame counts than it was trained on; image frames of a joint
  batch ignore every other frame; jax.grad reaches a^K and a^V; param_shapes, init, count_params
  and flops agree, and every preset keeps the scalar bias.

Tolerances: float64 reference properties (shift, clipping, image frames) hold to rounding of
reordered float64 sums: EXACT = 1e-12. fast vs ref: LAYER_TOL = 1e-5 (one block, float32
rounding of O(1) sums; ~3e-7 observed) and NET_TOL = 1e-4 relative to max(1, max |ref|)
(test_network_agreement's tolerance for float32 through the network's layers; ≤ 1.7e-6
observed for SHAW over 8 draws, 5 and 8 frames).
"""

import dataclasses
import subprocess
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vdm_fast.network as fast
import vdm_fast.network.attention as fast_attention
import vdm_ref.network as ref
from vdm_ref.configs import PRESETS, UNetConfig, config_from_dict, config_to_dict, get_preset

EXACT = 1e-12
LAYER_TOL = 1e-5
NET_TOL = 1e-4

# one level with attention, two temporal attention blocks (level 0 and the middle), D = 2
SHAW = UNetConfig(channels=8, channel_mult=(1,), num_res_blocks=1, attn_resolutions=(4,),
                  head_dim=4, emb_dim=16, emb_mlp_layers=1, frames=5, image_size=4,
                  in_channels=2, out_channels=2, max_relative_distance=2, norm_groups=2,
                  temporal_position="shaw")
BIAS = dataclasses.replace(SHAW, temporal_position="bias")


def random_params(config, seed, scale=0.3):
    """init(config, seed) with every leaf perturbed, so no zero-initialised table hides a bug."""
    rng = np.random.default_rng(seed + 1000)
    return jax.tree_util.tree_map(lambda a: a + scale * rng.standard_normal(a.shape),
                                  ref.init(config, seed))


def f32(tree):
    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, jnp.float32) if np.asarray(a).dtype.kind == "f" else jnp.asarray(a),
        tree)


def assert_close(out, expected, tol):
    scale = max(1.0, float(np.max(np.abs(expected))))
    err = float(np.max(np.abs(np.asarray(out, np.float64) - expected)))
    assert err <= tol * scale, f"max |out - expected| = {err:.3g} > {tol} * {scale:.3g}"


# --- the equation -----------------------------------------------------------------------------


def test_reference_is_shaw_equation_written_as_loops():
    rng = np.random.default_rng(0)
    n, s, heads, d, k = 2, 6, 2, 3, 2
    q, key, v = (rng.standard_normal((n, s, heads, d)) for _ in range(3))
    w_key, w_value = rng.standard_normal((2, 2 * k + 1, d))
    mask = rng.random((n, 1, s, s)) < 0.7
    out = ref.relative_attention(q, key, v, ref.relative_position_embeddings(w_key, s),
                                 ref.relative_position_embeddings(w_value, s), mask)
    expected = np.zeros_like(out)
    for b in range(n):
        for h in range(heads):
            for i in range(s):
                a = [np.clip(j - i, -k, k) + k for j in range(s)]  # row of w_{clip(j − i, k)}
                e = np.array([q[b, i, h] @ (key[b, j, h] + w_key[a[j]]) for j in range(s)])
                e = np.where(mask[b, 0, i], e / np.sqrt(d), 0.7 * np.finfo(float).min)
                alpha = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
                expected[b, i, h] = sum(alpha[j] * (v[b, j, h] + w_value[a[j]]) for j in range(s))
    np.testing.assert_allclose(out, expected, rtol=0, atol=EXACT)


# --- fast agrees with ref ---------------------------------------------------------------------


@settings(max_examples=6)
@given(n=st.integers(1, 3), s=st.integers(1, 12), heads=st.integers(1, 3), d=st.integers(1, 6),
       k=st.integers(1, 4), masked=st.booleans(), seed=st.integers(0, 2**16))
def test_relative_attention_twin_agrees(n, s, heads, d, k, masked, seed):
    rng = np.random.default_rng(seed)
    q, key, v = (rng.standard_normal((n, s, heads, d)) for _ in range(3))
    a_key, a_value = (ref.relative_position_embeddings(rng.standard_normal((2 * k + 1, d)), s)
                      for _ in range(2))
    mask = rng.random((n, 1, s, s)) < 0.6 if masked else None
    expected = ref.relative_attention(q, key, v, a_key, a_value, mask)
    out = fast_attention.relative_attention(*f32((q, key, v, a_key, a_value)), mask)
    assert_close(out, expected, LAYER_TOL)


def _temporal_params(rng, c=8, head_dim=4, k=2):
    dense = lambda: {"w": rng.standard_normal((c, c)) / np.sqrt(c), "b": rng.standard_normal(c)}
    return {"norm": {"scale": 1 + 0.1 * rng.standard_normal(c), "offset": rng.standard_normal(c)},
            "q": dense(), "k": dense(), "v": dense(), "out": dense(),
            "rel_key": rng.standard_normal((2 * k + 1, head_dim)),
            "rel_value": rng.standard_normal((2 * k + 1, head_dim))}


@pytest.mark.parametrize("frames", [1, 4, 9])
def test_temporal_attention_twin_agrees(frames):
    rng = np.random.default_rng(frames)
    params = _temporal_params(rng)
    x = rng.standard_normal((2, frames, 3, 3, 8))
    frame_mask = rng.random((2, frames)) < 0.4
    expected = ref.temporal_attention(params, x, frame_mask, head_dim=4, groups=2)
    attention = jax.jit(fast.temporal_attention, static_argnames=("head_dim", "groups"))
    out = attention(f32(params), f32(x), jnp.asarray(frame_mask), head_dim=4, groups=2)
    assert_close(out, expected, LAYER_TOL)
    block = fast.TemporalAttention.from_params(f32(params), head_dim=4, groups=2)
    assert sorted(block.to_params()) == sorted(params)  # the shared layout round-trips


@eqx.filter_jit
def _forward(model, z, logsnr, frame_mask):
    return model(z, logsnr, None, frame_mask)


@pytest.mark.parametrize("frames", [5, 8])  # the trained count, and more than 2D + 1 = 5
def test_network_twin_agrees_on_trained_and_other_frame_counts(frames):
    rng = np.random.default_rng(frames)
    params = random_params(SHAW, frames)
    z = rng.standard_normal((2, frames, 4, 4, 2))
    logsnr = rng.uniform(-10, 10, size=2)
    frame_mask = np.arange(frames)[None, :] >= np.array([[frames], [3]])  # video; 3 + images
    expected = ref.apply(params, SHAW, z, logsnr, None, frame_mask)
    out = _forward(fast.from_params(SHAW, params), *f32((z, logsnr)), jnp.asarray(frame_mask))
    assert out.shape == expected.shape == (2, frames, 4, 4, 2)
    assert_close(out, expected, NET_TOL)


# --- properties of the relative encoding (reference, float64) ---------------------------------


@pytest.mark.parametrize("config", [SHAW, BIAS], ids=["shaw", "bias"])
@pytest.mark.parametrize("shift", [1, 4])
def test_video_shifted_later_in_the_sequence_gives_shifted_outputs(config, shift):
    # A 4-frame video alone, and the same video after `shift` independent image frames: the
    # video frames attend only to each other, at unchanged offsets j − i (up to 3 > D = 2, so
    # clipping takes part), so their outputs are the same, shifted. An absolute position
    # encoding would break this.
    rng = np.random.default_rng(shift)
    params = random_params(config, 7)
    video = rng.standard_normal((1, 4, 4, 4, 2))
    images = rng.standard_normal((1, shift, 4, 4, 2))
    logsnr = np.array([1.5])
    alone = ref.apply(params, config, video, logsnr, None, np.zeros((1, 4), dtype=bool))
    joint = np.concatenate([images, video], axis=1)
    frame_mask = np.arange(shift + 4)[None, :] < shift
    out = ref.apply(params, config, joint, logsnr, None, frame_mask)
    np.testing.assert_allclose(out[:, shift:], alone, rtol=0, atol=EXACT)


def test_keys_beyond_the_clipping_distance_are_interchangeable():
    # k = 2: seen from frame 0, frames 2..6 all sit at offsets >= k and share w_2 (in a^K and
    # a^V), so permuting them leaves frame 0's output unchanged; frame 1 at offset 1 has its
    # own embedding, so swapping it with frame 2 does change the output.
    rng = np.random.default_rng(3)
    params = _temporal_params(rng, k=2)
    x = rng.standard_normal((2, 7, 3, 3, 8))
    out = ref.temporal_attention(params, x, head_dim=4, groups=2)
    perm = np.array([0, 1, 5, 2, 6, 4, 3])
    permuted = ref.temporal_attention(params, x[:, perm], head_dim=4, groups=2)
    np.testing.assert_allclose(permuted[:, 0], out[:, 0], rtol=0, atol=EXACT)
    swapped = ref.temporal_attention(params, x[:, [0, 2, 1, 3, 4, 5, 6]], head_dim=4, groups=2)
    assert np.max(np.abs(swapped[:, 0] - out[:, 0])) > 1e-3


def test_image_frames_ignore_other_frames():
    rng = np.random.default_rng(5)
    params = random_params(SHAW, 5)
    z = rng.standard_normal((2, 7, 4, 4, 2))
    logsnr = np.array([0.5, -2.0])
    frame_mask = np.array([[False] * 4 + [True] * 3, [True, False, True, False, False, True, False]])
    out = ref.apply(params, SHAW, z, logsnr, None, frame_mask)
    others = np.where(frame_mask[:, :, None, None, None], z, 5 * rng.standard_normal(z.shape))
    moved = ref.apply(params, SHAW, others, logsnr, None, frame_mask)
    np.testing.assert_allclose(moved[frame_mask], out[frame_mask], rtol=0, atol=EXACT)
    assert np.max(np.abs(moved[~frame_mask] - out[~frame_mask])) > 1e-3  # video frames do move


def test_network_runs_on_frame_counts_beyond_the_clipping_distance():
    rng = np.random.default_rng(6)
    params = random_params(SHAW, 6)
    for frames in (1, 3, 12):
        z = rng.standard_normal((1, frames, 4, 4, 2))
        out = ref.apply(params, SHAW, z, np.array([0.0]))
        assert out.shape == z.shape and np.all(np.isfinite(out))


# --- gradients --------------------------------------------------------------------------------


def test_jax_grad_reaches_the_key_and_value_embeddings():
    # one block: vdm_fast's gradient (float32, chunked kernel) against vdm_ref's under jax
    # (float64), relative to the table's largest entry
    rng = np.random.default_rng(8)
    params = _temporal_params(rng)
    x = rng.standard_normal((2, 6, 2, 2, 8))
    frame_mask = jnp.asarray([[False] * 6, [False, False, False, False, True, True]])
    w = rng.standard_normal(x.shape)

    def loss(attention, dtype):
        def f(tables):
            p = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), {**params, **tables})
            out = attention(p, jnp.asarray(x, dtype), frame_mask, head_dim=4, groups=2)
            return jnp.sum(jnp.asarray(w, dtype) * out)
        return f

    tables = {n: params[n] for n in ("rel_key", "rel_value")}
    g_ref = jax.jit(jax.grad(loss(ref.temporal_attention, jnp.float64)))(tables)
    g_fast = jax.jit(jax.grad(loss(fast.temporal_attention, jnp.float32)))(tables)
    for name in tables:
        g = np.asarray(g_ref[name])
        assert np.all(np.isfinite(g)) and np.max(np.abs(g)) > 1e-3, name
        np.testing.assert_allclose(np.asarray(g_fast[name]), g, rtol=0,
                                   atol=LAYER_TOL * np.max(np.abs(g)))


# --- layout, counts, presets ------------------------------------------------------------------


def test_param_shapes_init_count_and_flops_are_consistent():
    shapes, bias_shapes = ref.param_shapes(SHAW), ref.param_shapes(BIAS)
    params = ref.init(SHAW, 0)
    assert jax.tree_util.tree_map(np.shape, params) == shapes
    names = [b.name for b in ref.blocks(SHAW) if b.kind == "temporal_attn"]
    width = 2 * SHAW.max_relative_distance + 1
    for name in names:
        assert shapes[name]["rel_key"] == shapes[name]["rel_value"] == (width, SHAW.head_dim)
        assert "rel_bias" not in shapes[name] and "rel_key" not in bias_shapes[name]
        assert not np.any(params[name]["rel_key"]) and not np.any(params[name]["rel_value"])
    heads = [bias_shapes[n]["rel_bias"][0] for n in names]
    assert ref.count_params(SHAW) - ref.count_params(BIAS) == sum(
        2 * width * SHAW.head_dim - h * width for h in heads)
    # two more T x T matmuls per temporal block: 2 · 2 · (H·W) · T² · C each
    t, px = SHAW.frames, SHAW.image_size**2
    extra = sum(4 * px * t * t * blk.in_channels for blk in ref.blocks(SHAW)
                if blk.kind == "temporal_attn")
    assert ref.flops(SHAW) - ref.flops(BIAS) == extra
    assert fast.param_shapes(SHAW) == shapes and fast.flops(SHAW) == ref.flops(SHAW)


def test_every_preset_keeps_the_scalar_bias_and_the_option_round_trips():
    for name, preset in PRESETS.items():
        assert preset.unet.temporal_position == "bias", name
    with pytest.raises(ValueError, match="temporal_position='abs'"):
        UNetConfig(temporal_position="abs")
    shaw = dataclasses.replace(get_preset("mnist-small"), unet=dataclasses.replace(
        get_preset("mnist-small").unet, temporal_position="shaw"))
    assert config_from_dict(config_to_dict(shaw)) == shaw
    old = config_to_dict(get_preset("mnist-small"))
    del old["unet"]["temporal_position"]  # a checkpoint written before the option existed
    assert config_from_dict(old).unet.temporal_position == "bias"


def test_cli_presets_still_prints_the_table():
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "cli.py", "presets"], cwd=root, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "| mnist-small |" in run.stdout and "| ucf101 |" in run.stdout
