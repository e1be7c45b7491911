"""vdm_fast.network (Equinox, float32, jit) agrees with vdm_ref.network (NumPy float64).

Random small configs, random parameters (every leaf perturbed, so no zero-initialised layer
hides a disagreement) and random inputs; video-only and joint image-video batches; class and
text conditioning; dropout drawn from the same JAX key in both backends. The compiled forward
pass is one `eqx.filter_jit` function, so it compiles once per config (inputs keep one shape
per config; the frame mask varies by value, not shape).

Tolerance. The fast backend computes in float32 (unit roundoff 6e-8) and the reference in
float64, so the difference is float32 rounding carried through ~30 layers of unnormalised
random weights. Observed over 36 draws of these configs: max |fast − ref| ≤ 6.4e-6 ·
max(1, max |ref|). Asserted: NET_TOL = 1e-4 relative to max(1, max |ref|) — 15x headroom,
still far below any real bug (a wrong sign, mask or head split moves outputs by O(1)).
Single layers: LAYER_TOL = 1e-5 (one or two float32 roundings of O(1) sums).
"""

import dataclasses
import inspect

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import vdm_fast.network as fast
import vdm_ref.network as ref
from vdm_ref.configs import UNetConfig

NET_TOL = 1e-4
LAYER_TOL = 1e-5

BASE = UNetConfig(channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,),
                  head_dim=4, emb_dim=16, emb_mlp_layers=2, frames=5, image_size=8,
                  in_channels=3, out_channels=3, max_relative_distance=3, norm_groups=2)
CONFIGS = {
    "none-eps": BASE,
    "class-v": dataclasses.replace(BASE, conditioning="class", num_classes=4, target="v",
                                   in_channels=1, out_channels=1, attn_resolutions=(8, 4),
                                   emb_mlp_layers=1),
    "text-dropout": dataclasses.replace(BASE, conditioning="text", text_dim=6, dropout=0.1,
                                        num_res_blocks=2, emb_mlp_layers=3),
    "patch-2": dataclasses.replace(BASE, patch_size=2, image_size=16, attn_resolutions=(8,)),
}
B, T, L = 2, 5, 4  # batch, frames, caption tokens: one input shape per config


def random_params(config, seed, scale=0.3):
    rng = np.random.default_rng(seed + 1000)
    return jax.tree_util.tree_map(lambda a: a + scale * rng.standard_normal(a.shape),
                                  ref.init(config, seed))


def random_inputs(config, seed, video_frames=T):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((B, T, config.image_size, config.image_size, config.in_channels))
    logsnr = rng.uniform(-15.0, 15.0, size=(B,))
    cond = None
    if config.conditioning == "class":
        labels = rng.integers(0, config.num_classes + 1, size=B)  # num_classes = null (zeros)
        cond = np.eye(config.num_classes + 1)[labels][:, :-1]
    elif config.conditioning == "text":
        mask = np.arange(L)[None, :] < rng.integers(0, L + 1, size=(B, 1))  # 0 = null caption
        cond = (rng.standard_normal((B, L, config.text_dim)), mask)
    frame_mask = np.broadcast_to(np.arange(T) >= video_frames, (B, T))
    return z, logsnr, cond, frame_mask


def f32(tree):
    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, jnp.float32) if np.asarray(a).dtype.kind == "f" else jnp.asarray(a),
        tree)


@eqx.filter_jit
def forward(model, z, logsnr, cond, frame_mask, key):
    return model(z, logsnr, cond, frame_mask, key=key)


def assert_net_close(out, expected):
    scale = max(1.0, float(np.max(np.abs(expected))))
    err = float(np.max(np.abs(np.asarray(out, dtype=np.float64) - expected)))
    assert err <= NET_TOL * scale, f"max |fast - ref| = {err:.3g} > {NET_TOL} * {scale:.3g}"


@given(name=st.sampled_from(sorted(CONFIGS)), seed=st.integers(0, 2**16),
       video_frames=st.integers(1, T), scale=st.sampled_from([0.1, 0.5]))
def test_network_agrees_with_reference(name, seed, video_frames, scale):
    config = CONFIGS[name]
    params = random_params(config, seed, scale)
    z, logsnr, cond, frame_mask = random_inputs(config, seed, video_frames)
    key = jax.random.key(seed) if config.dropout > 0 else None  # training mode: same masks
    expected = ref.apply(params, config, z, logsnr, cond, frame_mask, dropout_rng=key)
    model = fast.from_params(config, params)
    out = forward(model, *f32((z, logsnr)), f32(cond), jnp.asarray(frame_mask), key)
    assert out.dtype == jnp.float32 and out.shape == expected.shape
    assert_net_close(out, expected)


def test_apply_twin_matches_module_and_reference():
    config = CONFIGS["class-v"]
    params = random_params(config, 3)
    z, logsnr, cond, frame_mask = random_inputs(config, 3, video_frames=3)
    expected = ref.apply(params, config, z, logsnr, cond, frame_mask)
    jitted = jax.jit(fast.apply, static_argnums=1)
    out = jitted(f32(params), config, *f32((z, logsnr, cond)), jnp.asarray(frame_mask))
    assert_net_close(out, expected)


def test_params_round_trip_and_init_twin():
    config = CONFIGS["text-dropout"]
    params = random_params(config, 4)
    back = fast.to_params(fast.from_params(config, params))
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(params)
    for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(params)):
        assert a.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(a), b.astype(np.float32))
    for a, b in zip(jax.tree_util.tree_leaves(fast.init(config, 5)),
                    jax.tree_util.tree_leaves(ref.init(config, 5))):
        np.testing.assert_array_equal(np.asarray(a), b.astype(np.float32))
    with pytest.raises(ValueError, match="params lack blocks"):
        fast.from_params(dataclasses.replace(config, num_res_blocks=3), params)


# --- layer twins: each vdm_fast function against its vdm_ref namesake (eager, float32) -------


def _rng(seed=0):
    return np.random.default_rng(seed)


def _dense_p(rng, cin, cout, bias=True):
    p = {"w": rng.standard_normal((cin, cout)) / np.sqrt(cin)}
    if bias:
        p["b"] = rng.standard_normal(cout)
    return p


def _conv_p(rng, cin, cout):
    return {"w": rng.standard_normal((1, 3, 3, cin, cout)) / 3, "b": rng.standard_normal(cout)}


def _norm_p(rng, c):
    return {"scale": 1 + 0.1 * rng.standard_normal(c), "offset": 0.1 * rng.standard_normal(c)}


def _attn_p(rng, c, heads=None):
    p = {"norm": _norm_p(rng, c), **{n: _dense_p(rng, c, c) for n in ("q", "k", "v", "out")}}
    if heads:
        p["rel_bias"] = rng.standard_normal((heads, 7))
    return p


def _video(rng, c=8, t=5, size=4):
    return rng.standard_normal((2, t, size, size, c))


def _frame_mask():
    return np.array([[False, False, False, True, True], [False, True, False, True, False]])


LAYER_CASES = {
    "dense": lambda r: (("dense",), (_dense_p(r, 8, 5), _video(r)), {}),
    "conv_1x3x3": lambda r: (("conv_1x3x3",), (_conv_p(r, 8, 6), _video(r)), {}),
    "conv_1x3x3_stride2": lambda r: (("conv_1x3x3",), (_conv_p(r, 8, 6), _video(r)), {"stride": 2}),
    "group_norm": lambda r: (("group_norm",), (_norm_p(r, 8), 3 * _video(r) + 1), {"groups": 4}),
    "downsample": lambda r: (("downsample",), (_conv_p(r, 8, 8), _video(r)), {}),
    "upsample": lambda r: (("upsample",), (_conv_p(r, 8, 8), _video(r)), {}),
    "space_to_depth": lambda r: (("space_to_depth",), (_video(r), 2), {}),
    "depth_to_space": lambda r: (("depth_to_space",), (_video(r), 2), {}),
    "spatial_attention": lambda r: (("spatial_attention",), (_attn_p(r, 8), _video(r)),
                                    {"head_dim": 4, "groups": 2}),
    "temporal_attention": lambda r: (("temporal_attention",),
                                     (_attn_p(r, 8, heads=2), _video(r), _frame_mask()),
                                     {"head_dim": 4, "groups": 2}),
    "temporal_attention_video": lambda r: (("temporal_attention",),
                                           (_attn_p(r, 8, heads=2), _video(r, t=9)),
                                           {"head_dim": 4, "groups": 2}),
    "attention_pooling": lambda r: (
        ("attention_pooling",),
        ({n: _dense_p(r, 6, 8, bias=False) for n in ("q", "k", "v")}
         | {"out": _dense_p(r, 8, 8, bias=False)}, r.standard_normal((3, 4, 6)),
         np.array([[True, True, False, False], [True, True, True, True], [False] * 4])),
        {"head_dim": 4}),
    "residual_block": lambda r: (("residual_block",),
                                 ({"norm_0": _norm_p(r, 8), "conv_0": _conv_p(r, 8, 4),
                                   "emb": _dense_p(r, 6, 4), "norm_1": _norm_p(r, 4),
                                   "conv_1": _conv_p(r, 4, 4), "skip": _dense_p(r, 8, 4)},
                                  _video(r), r.standard_normal((2, 6))), {"groups": 2}),
    "logsnr_embedding": lambda r: (("logsnr_embedding",), (r.uniform(-20, 20, 5), 8), {}),
    "dot_product_attention": lambda r: (
        ("dot_product_attention",),
        tuple(r.standard_normal((2, 5, 3, 4)) for _ in range(3))
        + (r.standard_normal((1, 3, 5, 5)), r.random((2, 1, 5, 5)) < 0.7), {}),
}


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_layer_twins_agree(case):
    (name,), args, kwargs = LAYER_CASES[case](_rng(len(case)))
    expected = getattr(ref, name)(*args, **kwargs)
    out = getattr(fast, name)(*f32(args), **kwargs)
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(np.asarray(out, np.float64), expected, rtol=0,
                               atol=LAYER_TOL * scale)


def test_conditioning_embedding_twin_agrees_with_null_conditions():
    config = CONFIGS["text-dropout"]
    params = random_params(config, 6)["emb"]
    _, logsnr, cond, _ = random_inputs(config, 6)
    for c in (cond, None, (cond[0], np.zeros_like(cond[1]))):
        expected = ref.conditioning_embedding(params, config, logsnr, c)
        out = fast.conditioning_embedding(f32(params), config, *f32((logsnr, c)))
        np.testing.assert_allclose(np.asarray(out, np.float64), expected, rtol=0,
                                   atol=LAYER_TOL * max(1.0, np.max(np.abs(expected))))


def test_every_reference_function_has_a_twin_with_its_signature():
    modules = ("layers", "attention", "embedding", "residual", "unet")
    for module in modules:
        ref_mod = getattr(ref, module)
        fast_mod = getattr(fast, module)
        for name, obj in vars(ref_mod).items():
            if name.startswith("_") or not inspect.isfunction(obj) or obj.__module__ != ref_mod.__name__:
                continue
            twin = getattr(fast_mod, name, None)
            assert twin is not None, f"vdm_fast.network.{module} lacks {name}"
            assert list(inspect.signature(twin).parameters) == list(
                inspect.signature(obj).parameters), f"{module}.{name}: signatures differ"


# --- options: bf16 compute, rematerialisation, attention implementation ----------------------


def test_bf16_compute_keeps_float32_params_and_stays_close():
    # bfloat16 has an 8-bit mantissa (unit roundoff 3.9e-3); through the network the relative
    # L2 error observed is ~1e-2, asserted < 5e-2.
    config = CONFIGS["none-eps"]
    params = random_params(config, 7)
    z, logsnr, cond, frame_mask = random_inputs(config, 7, video_frames=3)
    model = fast.from_params(config, params)
    model16 = fast.from_params(config, params, compute_dtype=jnp.bfloat16)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(model16))
    args = (*f32((z, logsnr)), cond, jnp.asarray(frame_mask), None)
    out32 = np.asarray(forward(model, *args))
    out16 = forward(model16, *args)
    assert out16.dtype == jnp.float32
    rel = np.linalg.norm(np.asarray(out16) - out32) / np.linalg.norm(out32)
    assert rel < 5e-2, rel


def test_remat_gives_the_same_output_and_gradients():
    # one level (the smallest U-Net with every block kind but resampling) keeps compiles short
    config = dataclasses.replace(BASE, channel_mult=(1,), attn_resolutions=(8,), dropout=0.1)
    params = random_params(config, 8)
    z, logsnr, _, frame_mask = random_inputs(config, 8, video_frames=4)
    args = (*f32((z, logsnr)), None, jnp.asarray(frame_mask))

    @eqx.filter_jit
    def value_and_grad(model):
        def loss(m):
            return jnp.mean(m(*args, key=jax.random.key(0)) ** 2)

        return eqx.filter_value_and_grad(loss)(model)

    v1, g1 = value_and_grad(fast.from_params(config, params))
    v2, g2 = value_and_grad(fast.from_params(config, params, remat=True))
    # the same float32 operations, possibly fused differently: agreement to float32 rounding,
    # measured on the whole gradient vector (single near-zero entries carry only rounding noise)
    np.testing.assert_allclose(float(v2), float(v1), rtol=1e-5)
    flat1, flat2 = (np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(g)])
                    for g in (g1, g2))
    assert np.linalg.norm(flat2 - flat1) <= 1e-5 * np.linalg.norm(flat1)


def test_attention_implementation_falls_back_to_xla():
    if jax.default_backend() == "cpu":
        assert fast.attention_implementation(jnp.bfloat16, 64) == "xla"
    assert fast.attention_implementation(jnp.float32, 64) == "xla"  # cuDNN needs bf16/fp16
    assert fast.attention_implementation(jnp.bfloat16, 12) == "xla"  # head_dim % 8 != 0
    rng = _rng(9)
    params, x = _attn_p(rng, 8), _video(rng)
    xla = fast.SpatialAttention.from_params(f32(params), head_dim=4, groups=2)
    forced = fast.SpatialAttention.from_params(f32(params), head_dim=4, groups=2,
                                               implementation="cudnn")
    x16 = jnp.asarray(x, jnp.bfloat16)
    if jax.default_backend() == "cpu":
        with pytest.warns(RuntimeWarning, match="cuDNN attention unavailable"):
            out = forced(x16)
    else:
        out = forced(x16)
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(xla(x16), np.float32),
                               atol=5e-2)
