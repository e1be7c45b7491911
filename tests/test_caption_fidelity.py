"""Caption fidelity on Moving MNIST (vdm_ref.support.eval.caption_fidelity): the caption parser on
the grammar's phrasings, scores of synthetic clips whose content is known, and real clips with
their own captions against the same clips with shuffled captions."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vdm_ref.support.data import clip_caption, load_mnist
from vdm_ref.support.data.captions import turns_back
from vdm_ref.support.data.moving_mnist import resize_digit
from vdm_ref.support.eval import load_digit_classifier
from vdm_ref.support.eval.caption_fidelity import (
    best_assignment,
    excursions,
    main,
    parse_caption,
    reference_fidelity,
    score_captions,
    shuffled,
)
from vdm_ref.support.eval.tracker import detect_digits

SIZE, DIGIT, FRAMES = 32, 20, 8  # the mnist-small-text data: 8 frames of 32 x 32, 20-px digits


@pytest.fixture(scope="module")
def classifier():
    return load_digit_classifier()


@pytest.fixture(scope="module")
def seven(classifier):
    """A test-split 7 that the classifier reads as 7 at 20 px (the first such one)."""
    test = load_mnist("test")
    for j in np.flatnonzero(test.labels == 7):
        d = resize_digit(test.images[j], DIGIT)
        frame = -np.ones((1, SIZE, SIZE, 1), np.float32)
        frame[0, 6:6 + DIGIT, 6:6 + DIGIT, 0] = d * 2 - 1
        if classifier.predict(detect_digits(frame, DIGIT)[0].crops).tolist() == [7]:
            return d
    raise AssertionError("no test-split 7 that the classifier recognises")


def render(digit, xs, ys):
    """One clip [1, T, SIZE, SIZE, 1] with `digit` at top-left corners (xs[t], ys[t])."""
    clip = np.zeros((1, len(xs), SIZE, SIZE, 1), np.float32)
    for t, (x, y) in enumerate(zip(xs, ys)):
        clip[0, t, y:y + DIGIT, x:x + DIGIT, 0] = digit
    return clip * 2 - 1


RIGHT = (np.arange(FRAMES) * 12 // 7, [6] * FRAMES)  # 0 -> 12 px, 1-2 px per frame
STILL = ([6] * FRAMES, [6] * FRAMES)
BOUNCE = ([0, 3, 6, 9, 12, 9, 6, 3], [6] * FRAMES)  # right, then back left by 9 px


def moved(x=(0, 0), y=(0, 0)):
    return np.array([x, y], bool)


@pytest.mark.parametrize("caption, expected", [
    ("digit 7 is moving right", [(7, moved(x=(0, 1)))]),
    ("digit 5 is bouncing left and right and digit 8 is moving up and down",
     [(5, moved(x=(1, 1))), (8, moved(y=(1, 1)))]),
    ("digit 1 is moving left, digit 2 is standing still and digit 3 is moving right and down",
     [(1, moved(x=(1, 0))), (2, moved()), (3, moved(x=(0, 1), y=(0, 1)))]),
    ("digit 3 is moving left and right and up and down", [(3, moved(x=(1, 1), y=(1, 1)))]),
    ("Digit 0 is moving  down and right.", [(0, moved(x=(0, 1), y=(0, 1)))]),  # case, spaces, order, stop
    ("digit 9 is bouncing up and down", [(9, moved(y=(1, 1)))]),
])
def test_parser_reads_the_grammar_phrasings(caption, expected):
    clauses = parse_caption(caption)
    assert [(c.digit, c.moved.tolist()) for c in clauses] == [(d, m.tolist()) for d, m in expected]


@given(st.lists(st.tuples(st.integers(0, 9), st.lists(st.booleans(), min_size=4, max_size=4), st.booleans()),
                min_size=1, max_size=3))
def test_parser_inverts_the_caption_generator(digits):
    labels = [d for d, _, _ in digits]
    moves = np.array([m for _, m, _ in digits], bool).reshape(-1, 2, 2)
    verbs = ["bouncing" if b and turns_back(m) else "moving" for (_, _, b), m in zip(digits, moves)]
    clauses = parse_caption(clip_caption(labels, moves, verbs))
    assert [c.digit for c in clauses] == labels
    assert np.array_equal(np.array([c.moved for c in clauses]), moves)


@pytest.mark.parametrize("caption", [
    "a cat is sleeping", "digit seven is moving right", "digit 12 is moving up", "digit 3 is flying left",
    "digit 3 is moving sideways", "digit 3 is bouncing left", "digit 3 is moving left and left",
])
def test_unknown_phrasing_is_an_unparsed_clause(caption):
    (clause,) = parse_caption(caption)
    assert not clause.parsed and clause.reason


def test_unparsed_and_empty_captions_are_counted_not_scored(classifier, seven):
    clip = render(seven, *RIGHT)
    mixed = parse_caption("digit 7 is moving right and digit 4 is dancing")
    assert [c.parsed for c in mixed] == [True, False]
    r = score_captions(np.concatenate([clip] * 3), ["digit 7 is moving right and digit 4 is dancing", "", "???"],
                         DIGIT, classifier=classifier)
    assert (r.videos, r.scored, r.clauses, r.unparsed) == (3, 1, 3, 2)
    assert r.fidelity == 1.0 and np.isnan(r.per_video[1].fidelity)


def test_digit_moving_right_fits_only_its_own_caption(classifier, seven):
    clip = render(seven, *RIGHT)
    captions = ["digit 7 is moving right", "digit 7 is moving left", "digit 1 is moving right",
                "digit 7 is bouncing left and right", "digit 7 is moving right and up", "digit 7 is standing still"]
    r = score_captions(np.concatenate([clip] * len(captions)), captions, DIGIT, classifier=classifier)
    got = [(v.fidelity, v.digit_rate, v.motion_rate) for v in r.per_video]
    assert got == [(1, 1, 1), (0, 1, 0), (0, 0, 1), (0, 1, 0), (0, 1, 0), (0, 1, 0)]


def test_still_and_bouncing_digits(classifier, seven):
    clips = np.concatenate([render(seven, *STILL), render(seven, *STILL), render(seven, *BOUNCE), render(seven, *BOUNCE)])
    captions = ["digit 7 is standing still", "digit 7 is moving right", "digit 7 is bouncing left and right",
                "digit 7 is moving right"]
    r = score_captions(clips, captions, DIGIT, classifier=classifier)
    assert [v.fidelity for v in r.per_video] == [1, 0, 1, 0]


def test_each_clause_needs_its_own_digit(classifier, seven):
    r = score_captions(render(seven, *RIGHT), "digit 7 is moving right and digit 7 is moving right", DIGIT,
                         classifier=classifier)
    assert r.fidelity == 0.5  # one 7 on screen satisfies one of the two clauses


def test_best_assignment_is_a_maximum_matching():
    ok = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]], bool)  # greedy would give track 0 to clause 0
    assert best_assignment(ok).tolist() == [True, True, False]
    assert best_assignment(np.zeros((2, 0), bool)).tolist() == [False, False]


def test_excursions_are_largest_rise_and_fall():
    assert excursions([0, 3, 6, 9, 12, 9, 6, 3]) == (9.0, 12.0)
    assert excursions([5]) == (0.0, 0.0)


def test_shuffled_captions_leave_no_clip_its_own():
    caps = [f"digit {i} is moving up" for i in range(10)]
    out = shuffled(caps, 0)
    assert sorted(out) == sorted(caps) and all(a != b for a, b in zip(out, caps))


def test_real_captions_score_far_above_shuffled(classifier):
    r = reference_fidelity(24, classifier=classifier)
    own, shuf = r["own captions"], r["shuffled captions"]
    # 24 clips: the real-clip ceiling is about 0.96 and the shuffled floor about 0.03 at N = 256
    # (docs/evaluation.md); thresholds leave several standard errors of room either side.
    assert own.fidelity >= 0.8 and shuf.fidelity <= 0.25
    assert own.fidelity - shuf.fidelity > 5 * np.hypot(own.fidelity_se, shuf.fidelity_se)
    assert own.motion >= 0.9 and own.digit >= 0.8


def test_cli_reads_captions_from_npz_and_json(tmp_path, capsys, seven):
    clips = np.concatenate([render(seven, *RIGHT), render(seven, *STILL)])
    np.savez(tmp_path / "stored.npz", video=clips, captions=np.array(["digit 7 is moving right", "digit 7 is moving left"]))
    np.savez(tmp_path / "bare.npz", video=clips)
    (tmp_path / "caps.json").write_text(json.dumps(["digit 7 is moving right", "digit 7 is standing still"]))
    main([str(tmp_path / "stored.npz"), "--from-npz"])
    main([str(tmp_path / "bare.npz"), "--captions", str(tmp_path / "caps.json")])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {tmp_path}")]
    assert "| 2/2 | 0.500 ± 0.500 |" in rows[0] and "| 2/2 | 1.000 ± 0.000 |" in rows[1]
    with pytest.raises(SystemExit):
        main([str(tmp_path / "bare.npz"), "--from-npz"])  # no captions stored: a clear usage error
    (tmp_path / "three.json").write_text(json.dumps(["digit 7 is moving right"] * 3))
    with pytest.raises(SystemExit):
        main([str(tmp_path / "bare.npz"), "--captions", str(tmp_path / "three.json")])
    assert "3 captions for 2 videos" in capsys.readouterr().err
