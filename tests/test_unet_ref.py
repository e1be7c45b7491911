"""Properties of the reference 3D U-Net (Sec. 3, Fig. 1, Appendix A): vdm_ref.network.

Network tests use random parameters (the init zeroes every block's last layer, which would make
temporal attention the identity and hide the properties under test). NumPy float64 throughout,
except the gradient test (jax.numpy under jax.jit(jax.grad)).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vdm_ref.configs import APPENDIX_A, PRESETS, UNetConfig, get_preset
from vdm_ref.network import (
    apply,
    attention_pooling,
    conditioning_embedding,
    count_params,
    init,
    param_shapes,
    relative_position_bias,
    temporal_attention_mask,
)
from vdm_ref.support.presets import main as presets_main

TINY = get_preset("tiny").unet  # 16 frames, 8x8, levels (8, 4), attention at 4, D = 8
TINY_CLASS = dataclasses.replace(TINY, conditioning="class", num_classes=5, target="v",
                                 in_channels=1, out_channels=1)
TINY_TEXT = dataclasses.replace(TINY, conditioning="text", text_dim=6)
TINY_DEEP = dataclasses.replace(TINY, channel_mult=(1, 2, 2), num_res_blocks=2, image_size=16,
                                attn_resolutions=(8, 4), dropout=0.1)
TINY_PATCH = dataclasses.replace(TINY, patch_size=2, image_size=16)  # levels 8, 4 on 2x2 patches

# Exactness: an image frame's computation never reads another frame (per-frame convolutions and
# GroupNorm; masked temporal logits give exp(-huge) = 0 exactly), so perturbing other frames
# changes it by at most float64 rounding in reductions; 1e-12 leaves room for that.
EXACT = 1e-12


def random_params(config, seed, scale=0.3):
    """init(config, seed) with every leaf perturbed: no zero-initialised layer stays zero."""
    rng = np.random.default_rng(seed + 1000)

    def perturb(tree):
        return {k: perturb(v) if isinstance(v, dict) else v + scale * rng.standard_normal(v.shape)
                for k, v in tree.items()}

    return perturb(init(config, seed))


def inputs(config, batch, frames, seed, size=None):
    rng = np.random.default_rng(seed)
    size = config.image_size if size is None else size
    z = rng.standard_normal((batch, frames, size, size, config.in_channels))
    logsnr = rng.uniform(-10.0, 10.0, size=(batch,))
    cond = None
    if config.conditioning == "class":
        cond = np.eye(config.num_classes)[rng.integers(0, config.num_classes, size=batch)]
    elif config.conditioning == "text":
        mask = np.arange(4)[None, :] < rng.integers(1, 5, size=(batch, 1))
        cond = (rng.standard_normal((batch, 4, config.text_dim)), mask)
    return z, logsnr, cond


_PARAMS = {}


def params_for(config):
    if config not in _PARAMS:
        _PARAMS[config] = random_params(config, 0)
    return _PARAMS[config]


@pytest.mark.parametrize("config", [TINY, TINY_CLASS, TINY_TEXT, TINY_DEEP, TINY_PATCH],
                         ids=["tiny", "class-v", "text", "deep", "patch"])
@pytest.mark.parametrize("frames", [1, 3, 16])
def test_output_shape_and_dtype(config, frames):
    z, logsnr, cond = inputs(config, 2, frames, seed=frames)
    out = apply(params_for(config), config, z, logsnr, cond)
    assert out.shape == (2, frames, config.image_size, config.image_size, config.out_channels)
    assert out.dtype == np.float64
    assert np.all(np.isfinite(out))


def test_float32_inputs_give_float32_output():
    params = jax.tree_util.tree_map(lambda a: a.astype(np.float32), params_for(TINY))
    z, logsnr, _ = inputs(TINY, 1, 2, seed=0)
    out = apply(params, TINY, z.astype(np.float32), logsnr.astype(np.float32))
    assert out.dtype == np.float32


@given(video=st.integers(1, 4), images=st.integers(1, 3), seed=st.integers(0, 2**16),
       data=st.data())
def test_image_frames_ignore_other_frames(video, images, seed, data):
    config = TINY_TEXT
    t = video + images
    z, logsnr, cond = inputs(config, 2, t, seed)
    frame_mask = np.broadcast_to(np.arange(t) >= video, (2, t))
    params = params_for(config)
    out = apply(params, config, z, logsnr, cond, frame_mask)
    image = data.draw(st.integers(video, t - 1), label="image frame")
    other = data.draw(st.integers(0, t - 2), label="perturbed frame")
    other = other + (other >= image)  # any frame but `image`
    z2 = z.copy()
    z2[:, other] += np.random.default_rng(seed).standard_normal(z2[:, other].shape)
    out2 = apply(params, config, z2, logsnr, cond, frame_mask)
    np.testing.assert_allclose(out2[:, image], out[:, image], rtol=0, atol=EXACT)
    if other < video and video > 1:  # a video frame's change reaches the other video frames
        target = (other + 1) % video
        assert np.max(np.abs(out2[:, target] - out[:, target])) > 1e-6
    if other >= video:  # and an image frame's change reaches no video frame
        np.testing.assert_allclose(out2[:, :video], out[:, :video], rtol=0, atol=EXACT)


def test_space_to_depth_is_a_patch_fold_and_inverts():
    from vdm_ref.network.layers import depth_to_space, space_to_depth

    x = np.random.default_rng(0).standard_normal((2, 3, 8, 6, 5))
    y = space_to_depth(x, 2)
    assert y.shape == (2, 3, 4, 3, 20)
    # y[b, t, i, j, (dy*p + dx)*C + c] = x[b, t, i*p + dy, j*p + dx, c]
    np.testing.assert_array_equal(y[1, 2, 3, 1, (1 * 2 + 0) * 5 + 4], x[1, 2, 7, 2, 4])
    np.testing.assert_array_equal(depth_to_space(y, 2), x)
    assert space_to_depth(x, 1) is x


def test_patch_model_sees_every_pixel_and_links_frames():
    """With p = 2 a change in one pixel of one frame moves that frame's output (no pixel is lost
    in the fold) and, through temporal attention, the other frames'."""
    config = TINY_PATCH
    z, logsnr, _ = inputs(config, 1, 3, seed=5)
    params = params_for(config)
    out = apply(params, config, z, logsnr)
    z2 = z.copy()
    z2[0, 1, 5, 9, 0] += 1.0
    out2 = apply(params, config, z2, logsnr)
    assert out.shape == z.shape
    assert np.max(np.abs(out2[0, 1] - out[0, 1])) > 1e-6
    assert np.max(np.abs(out2[0, 0] - out[0, 0])) > 1e-9


def test_video_frames_see_each_other_without_mask():
    z, logsnr, _ = inputs(TINY, 1, 4, seed=3)
    params = params_for(TINY)
    out = apply(params, TINY, z, logsnr)
    z2 = z.copy()
    z2[:, 0] += 1.0
    out2 = apply(params, TINY, z2, logsnr)
    assert np.min(np.max(np.abs(out2 - out), axis=(0, 2, 3, 4))) > 1e-6  # every frame moved


@given(frames=st.integers(2, 6), seed=st.integers(0, 2**16), perm_seed=st.integers(0, 2**16))
def test_all_image_frames_make_a_per_frame_image_model(frames, seed, perm_seed):
    config = TINY_CLASS
    z, logsnr, cond = inputs(config, 2, frames, seed)
    frame_mask = np.ones((2, frames), dtype=bool)
    perm = np.random.default_rng(perm_seed).permutation(frames)
    params = params_for(config)
    out = apply(params, config, z, logsnr, cond, frame_mask)
    out_perm = apply(params, config, z[:, perm], logsnr, cond, frame_mask)
    np.testing.assert_allclose(out_perm, out[:, perm], rtol=0, atol=EXACT)
    # ... and each frame alone gives the same output: no frame sees another
    single = apply(params, config, z[:, :1], logsnr, cond, frame_mask[:, :1])
    np.testing.assert_allclose(single, out[:, :1], rtol=0, atol=EXACT)


@given(frames=st.integers(1, 30), d=st.integers(1, 8), heads=st.integers(1, 3),
       seed=st.integers(0, 2**16))
def test_temporal_bias_is_toeplitz_in_offset_and_clipped(frames, d, heads, seed):
    table = np.random.default_rng(seed).standard_normal((heads, 2 * d + 1))
    bias = relative_position_bias(table, frames)
    assert bias.shape == (heads, frames, frames)
    i, j = np.meshgrid(np.arange(frames), np.arange(frames), indexing="ij")
    offset = j - i
    # Toeplitz: constant along every diagonal
    np.testing.assert_array_equal(bias[:, 1:, 1:], bias[:, :-1, :-1])
    # the entry is the table's at the clipped offset
    np.testing.assert_array_equal(bias, table[:, np.clip(offset, -d, d) + d])
    far = np.abs(offset) >= d
    np.testing.assert_array_equal(bias[:, far], table[:, np.where(offset[far] > 0, 2 * d, 0)])


@pytest.mark.parametrize("frames", [9, 24])
def test_network_runs_on_other_frame_counts(frames):
    assert TINY.frames == 16 and TINY.max_relative_distance < 24
    z, logsnr, _ = inputs(TINY, 1, frames, seed=frames)
    out = apply(params_for(TINY), TINY, z, logsnr)
    assert out.shape == (1, frames, 8, 8, 3) and np.all(np.isfinite(out))


def test_joint_mask_lets_images_see_only_themselves():
    frame_mask = np.array([[False, False, True, True]])
    keep = temporal_attention_mask(frame_mask)[0]
    expected = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=bool)
    np.testing.assert_array_equal(keep, expected)


def _pool_params(text_dim, emb_dim, seed):
    rng = np.random.default_rng(seed)
    return {"q": {"w": rng.standard_normal((text_dim, emb_dim))},
            "k": {"w": rng.standard_normal((text_dim, emb_dim))},
            "v": {"w": rng.standard_normal((text_dim, emb_dim))},
            "out": {"w": rng.standard_normal((emb_dim, emb_dim))}}


@given(length=st.integers(1, 7), batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_attention_pooling_ignores_padded_tokens(length, batch, seed):
    rng = np.random.default_rng(seed)
    params = _pool_params(5, 8, seed)
    tokens = rng.standard_normal((batch, length, 5))
    valid = rng.integers(1, length + 1, size=batch)
    mask = np.arange(length)[None, :] < valid[:, None]
    out = attention_pooling(params, tokens, mask, head_dim=4)
    garbage = np.where(mask[:, :, None], tokens, 100.0 * rng.standard_normal(tokens.shape))
    np.testing.assert_allclose(attention_pooling(params, garbage, mask, head_dim=4), out,
                               rtol=0, atol=EXACT)
    for b in range(batch):  # the same as pooling the valid tokens alone
        n = valid[b]
        alone = attention_pooling(params, tokens[b:b + 1, :n], mask[b:b + 1, :n], head_dim=4)
        np.testing.assert_allclose(alone, out[b:b + 1], rtol=1e-12, atol=1e-12)


def test_null_text_condition_gives_zero_pooling_and_unconditional_output():
    params = _pool_params(6, 8, 0)
    tokens = np.random.default_rng(0).standard_normal((2, 3, 6))
    all_padded = np.zeros((2, 3), dtype=bool)
    np.testing.assert_array_equal(attention_pooling(params, tokens, all_padded, head_dim=4), 0.0)
    zero = np.zeros_like(tokens)
    np.testing.assert_array_equal(attention_pooling(params, zero, ~all_padded, head_dim=4), 0.0)
    z, logsnr, _ = inputs(TINY_TEXT, 2, 3, seed=1)
    p = params_for(TINY_TEXT)
    np.testing.assert_allclose(apply(p, TINY_TEXT, z, logsnr, (tokens, all_padded)),
                               apply(p, TINY_TEXT, z, logsnr, None), rtol=0, atol=EXACT)


def test_null_class_condition_is_the_zero_one_hot():
    z, logsnr, _ = inputs(TINY_CLASS, 2, 3, seed=2)
    p = params_for(TINY_CLASS)
    np.testing.assert_array_equal(apply(p, TINY_CLASS, z, logsnr, np.zeros((2, 5))),
                                  apply(p, TINY_CLASS, z, logsnr, None))


@pytest.mark.slow  # ~35 s: jax.grad through the whole reference U-Net
def test_jax_grad_reaches_every_parameter():
    # Text conditioning, dropout, a joint image-video batch: every parameter is on the path.
    # One jit-compiled value_and_grad; its output must also match NumPy's (same dropout key).
    config = dataclasses.replace(TINY_TEXT, dropout=0.1)
    params = random_params(config, 1)
    z, logsnr, cond = inputs(config, 2, 4, seed=4)
    frame_mask = np.array([[False, False, True, True], [False, False, False, True]])
    key = jax.random.key(0)
    to_jax = lambda tree: jax.tree_util.tree_map(jnp.asarray, tree)

    @jax.jit
    def value_and_grad(p, z, logsnr, cond, frame_mask):
        def loss(p):
            out = apply(p, config, z, logsnr, cond, frame_mask, dropout_rng=key)
            return jnp.sum(out**2), out

        return jax.value_and_grad(loss, has_aux=True)(p)

    (_, out), g = value_and_grad(*to_jax((params, z, logsnr, cond, frame_mask)))
    # jax.numpy float64 vs NumPy float64, same draws: equal up to summation-order rounding
    np.testing.assert_allclose(np.asarray(out),
                               apply(params, config, z, logsnr, cond, frame_mask, dropout_rng=key),
                               rtol=1e-9, atol=1e-9)
    leaves = jax.tree_util.tree_leaves_with_path(g)
    assert len(leaves) == len(jax.tree_util.tree_leaves(params))
    zero = [jax.tree_util.keystr(path) for path, v in leaves if not np.any(np.asarray(v) != 0)]
    assert not zero, f"parameters with zero gradient: {zero}"
    assert all(np.all(np.isfinite(np.asarray(v))) for _, v in leaves)


def test_jax_grad_reaches_the_class_embedding():
    # The class config differs from the text one only in the embedding's "class" table.
    params = jax.tree_util.tree_map(jnp.asarray, random_params(TINY_CLASS, 2)["emb"])
    _, logsnr, cond = inputs(TINY_CLASS, 3, 1, seed=5)

    def loss(p):
        return jnp.sum(conditioning_embedding(p, TINY_CLASS, jnp.asarray(logsnr),
                                              jnp.asarray(cond)) ** 2)

    g = jax.grad(loss)(params)
    for path, v in jax.tree_util.tree_leaves_with_path(g):
        assert np.any(np.asarray(v) != 0), jax.tree_util.keystr(path)


def test_dropout_is_explicit_and_off_in_evaluation():
    config = TINY_DEEP  # dropout 0.1
    params = params_for(config)
    z, logsnr, _ = inputs(config, 1, 2, seed=6)
    eval_out = apply(params, config, z, logsnr)
    np.testing.assert_array_equal(apply(params, config, z, logsnr, dropout_rng=None), eval_out)
    a = apply(params, config, z, logsnr, dropout_rng=np.random.default_rng(1))
    b = apply(params, config, z, logsnr, dropout_rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert np.max(np.abs(a - eval_out)) > 1e-6
    k1 = apply(params, config, z, logsnr, dropout_rng=jax.random.key(3))
    k2 = apply(params, config, z, logsnr, dropout_rng=jax.random.key(3))
    np.testing.assert_array_equal(k1, k2)


def test_init_is_deterministic_and_matches_param_shapes():
    a, b = init(TINY_TEXT, 7), init(TINY_TEXT, 7)
    shapes = param_shapes(TINY_TEXT)
    flat_a = jax.tree_util.tree_leaves_with_path(a)
    flat_b = jax.tree_util.tree_leaves(b)
    flat_s = jax.tree_util.tree_leaves(shapes, is_leaf=lambda x: isinstance(x, tuple))
    assert [v.shape for _, v in flat_a] == flat_s
    for (_, x), y in zip(flat_a, flat_b):
        np.testing.assert_array_equal(x, y)
    assert sum(v.size for _, v in flat_a) == count_params(TINY_TEXT)
    assert all(isinstance(k, str) for k in a) and all(isinstance(k, str) for k in a["emb"])


def test_presets_cover_appendix_a_and_print(capsys):
    assert set(APPENDIX_A) <= set(PRESETS)
    ucf = get_preset("ucf101")
    assert ucf.unet.channels == 256 and ucf.unet.channel_mult == (1, 2, 4, 8)
    assert ucf.diffusion.gamma == 0.1 and ucf.train.image_frames == 8
    bair = get_preset("bair")
    assert bair.unet.target == "v" and bair.diffusion.recon_guidance_weight == 50.0
    assert bair.train.beta2 == 0.999 and bair.train.weight_decay == 0.01 and bair.train.flip
    sr = get_preset("t2v-sr-9x128")
    assert (sr.unet.frames, sr.unet.image_size, sr.unet.head_dim) == (9, 128, 128)
    assert 500_000 <= count_params(get_preset("mnist-small").unet) <= 2_000_000
    presets_main()
    printed = capsys.readouterr().out
    assert all(f"| {name} |" in printed for name in PRESETS)


def test_unknown_preset_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown preset 'ucf'.*ucf101"):
        get_preset("ucf")


@pytest.mark.parametrize("kwargs, match", [
    ({"image_size": 60}, "image_size=60.*multiple of patch_size\\*2\\*\\*\\(K-1\\)=8"),
    ({"image_size": 32, "patch_size": 3}, "image_size=32.*patch_size\\*2\\*\\*\\(K-1\\)=24"),
    ({"patch_size": 0}, "patch_size=0"),
    ({"norm_groups": 3}, "multiple of norm_groups=3"),
    ({"head_dim": 12}, "multiple of head_dim=12"),
    ({"attn_resolutions": (5,)}, "attn_resolutions contains 5"),
    ({"target": "x"}, "target='x'"),
    ({"conditioning": "class"}, "num_classes=0"),
    ({"channels": 0}, "channels=0"),
    ({"dropout": 1.0}, "dropout=1.0"),
])
def test_invalid_config_raises_naming_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNetConfig(**kwargs)


def test_bad_inputs_raise_naming_the_value():
    p = params_for(TINY)
    z, logsnr, _ = inputs(TINY, 2, 3, seed=0)
    with pytest.raises(ValueError, match="channels"):
        apply(p, TINY, z[..., :1], logsnr)
    with pytest.raises(ValueError, match="logsnr has shape"):
        apply(p, TINY, z, logsnr[:1])
    with pytest.raises(ValueError, match="frame_mask has shape"):
        apply(p, TINY, z, logsnr, frame_mask=np.zeros((2, 4), dtype=bool))
    with pytest.raises(ValueError, match="spatial size 7x7"):
        apply(p, TINY, z[:, :, :7, :7], logsnr)
    with pytest.raises(ValueError, match="conditioning='none'"):
        apply(p, TINY, z, logsnr, cond=np.zeros((2, 5)))
