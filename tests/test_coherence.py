"""The boundary-coherence measure (vdm_ref.support.eval): tracker, digit classifier, and the claim that it
scores real Moving MNIST clips high and clips spliced from two videos at the boundary low."""

import numpy as np
import pytest

from vdm_ref.support.data import MovingMNIST, load_mnist
from vdm_ref.support.eval import (
    block_boundaries,
    boundary_coherence,
    connected_components,
    detect_digits,
    load_digit_classifier,
    match_digits,
    render_digit_crops,
    splice_videos,
)
from vdm_ref.support.eval.tracker import THRESHOLD


@pytest.fixture(scope="module")
def classifier():
    return load_digit_classifier()


def test_connected_components_counts_8_connected_blobs():
    m = np.zeros((2, 8, 8), bool)
    m[0, 1, 1] = m[0, 2, 2] = True  # diagonal neighbours: one component
    m[0, 5:7, 5:7] = True  # a second one
    m[1, 0, :] = True  # frame 1: one line
    lab = connected_components(m)
    assert len(np.unique(lab[0][lab[0] > 0])) == 2
    assert len(np.unique(lab[1][lab[1] > 0])) == 1
    assert lab[0, 1, 1] == lab[0, 2, 2]
    assert not set(np.unique(lab[0])) & set(np.unique(lab[1])) - {0}  # labels unique across frames
    assert np.all((lab > 0) == m)


def test_detect_digits_finds_one_digit_at_its_centre_of_mass():
    ds = MovingMNIST(4, num_frames=3, resolution=32, digit_size=14, num_digits=1, seed=0)
    v = ds.clip(0)
    det = detect_digits(v, 14)
    ink = np.clip((v[..., 0] + 1) / 2, 0, 1)
    for f, d in enumerate(det):
        assert len(d) == 1 and d.single[0]
        ys, xs = np.nonzero(ink[f] > THRESHOLD)
        w = ink[f][ys, xs]
        # centre of mass of the ink above threshold, to float precision
        np.testing.assert_allclose(d.centres[0], [(w * ys).sum() / w.sum(), (w * xs).sum() / w.sum()], atol=1e-9)


def test_match_digits_is_the_minimum_total_distance_assignment():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 32, (3, 2)), rng.uniform(0, 32, (4, 2))
    pairs = match_digits(a, b)
    assert len(pairs) == 3 and len({j for _, j in pairs}) == 3
    cost = sum(np.linalg.norm(a[i] - b[j]) for i, j in pairs)
    import itertools

    best = min(sum(np.linalg.norm(a[i] - b[p[i]]) for i in range(3)) for p in itertools.permutations(range(4), 3))
    assert cost == pytest.approx(best)
    assert match_digits(a, np.zeros((0, 2))) == []


def test_shipped_classifier_accuracy_on_mnist_test_digits(classifier):
    # the stored figure is the full 10 000-digit test accuracy; re-measure on 1000 digits.
    # 0.9 leaves > 4 binomial standard errors below the ≈ 0.95 measured.
    assert classifier.test_accuracy > 0.9
    test = load_mnist("test")
    crops = render_digit_crops(test.images[:1000], np.random.default_rng(5))
    assert np.mean(classifier.predict(crops) == test.labels[:1000]) > 0.9


def test_real_clips_score_high_and_spliced_clips_low(classifier):
    # One digit of 14 px in 32x32 frames (digits never merge): real boundaries carry over
    # (measured 1.0), a splice of two different clips almost never (measured ≈ 0.02: the same
    # class, ~10 %, and within τ of the old position).
    ds = MovingMNIST(24, num_frames=12, resolution=32, digit_size=14, num_digits=1, seed=3, split="test")
    v = ds.batch(np.arange(24))
    real = boundary_coherence(v, [6], 14, classifier=classifier)
    spliced = boundary_coherence(splice_videos(v, np.roll(v, 1, axis=0), 6), [6], 14, classifier=classifier,
                                 jump_tolerance=real.jump_tolerance)
    assert real.boundary > 0.9 and real.within > 0.9
    assert spliced.boundary < 0.25
    assert spliced.within == pytest.approx(real.within)  # only the boundary pairs changed
    assert spliced.jump_ratio > 2.0


def test_two_digit_clips_separate_real_from_spliced(classifier):
    # Two 28 px digits at 64x64 overlap in places (one component for two digits), so real clips
    # score below 1 (measured ≈ 0.79) — but far above splices (measured ≈ 0.03).
    ds = MovingMNIST(16, num_frames=8, resolution=64, digit_size=28, num_digits=2, seed=3, split="test")
    v = ds.batch(np.arange(16))
    real = boundary_coherence(v, [4], 28, classifier=classifier)
    spliced = boundary_coherence(splice_videos(v, np.roll(v, 1, axis=0), 4), [4], 28, classifier=classifier,
                                 jump_tolerance=real.jump_tolerance)
    assert real.boundary > 0.55
    assert spliced.boundary < 0.25
    assert real.boundary - spliced.boundary > 0.4


def test_blank_frames_and_bad_boundaries():
    v = -np.ones((2, 4, 16, 16, 1))
    r = boundary_coherence(v, [2], 8)
    assert r.boundary == 1.0 and r.within == 1.0  # nothing on screen, nothing lost
    with pytest.raises(ValueError, match="boundaries"):
        boundary_coherence(v, [4], 8)
    with pytest.raises(ValueError, match="videos must be"):
        boundary_coherence(np.zeros((4, 16, 16)), [1], 8)
    assert block_boundaries(16, 8, 64) == [16, 24, 32, 40, 48, 56]
