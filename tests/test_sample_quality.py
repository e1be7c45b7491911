"""The sample-quality numbers separate real clips from frame-shuffled clips and from noise."""

import numpy as np
import pytest

from vdm_ref.support.eval.sample_quality import digit_sample_quality, main, reference_videos


@pytest.fixture(scope="module")
def refs():
    return reference_videos(12, 6)


def test_real_clips_score_at_the_top_and_shuffled_ones_lose_identity(refs):
    real = digit_sample_quality(refs["real clips"], 20)
    shuffled = digit_sample_quality(refs["frame-shuffled clips"], 20)
    assert real["carry_over"] > 0.9 and shuffled["carry_over"] < 0.3
    assert real["shift_coherence"] > 0.95 > shuffled["shift_coherence"] + 0.3
    assert real["same_digit"] > 0.6 > shuffled["same_digit"]
    # shuffling frames keeps every frame a real digit
    assert real["recognisable"] == pytest.approx(shuffled["recognisable"], abs=0.1)
    assert real["empty_frames"] == 0.0


def test_noise_is_not_recognisable():
    noise = np.random.default_rng(0).uniform(-1, 1, (4, 6, 32, 32, 1))
    r = digit_sample_quality(noise, 20)
    assert r["recognisable"] < 0.1 and r["same_digit"] == 0.0


def test_blank_videos_are_empty_and_bad_shapes_raise():
    r = digit_sample_quality(-np.ones((2, 4, 32, 32, 1)), 20)
    assert r["empty_frames"] == 1.0 and r["recognisable"] == 0.0
    with pytest.raises(ValueError, match="B, T, H, W, C"):
        digit_sample_quality(np.zeros((4, 32, 32, 1)), 20)


def test_cli_prints_a_row_per_file_and_the_references(tmp_path, capsys, refs):
    path = tmp_path / "s.npz"
    np.savez(path, video=refs["real clips"][:4].astype(np.float32))
    main([str(path), "--reference-videos", "4"])
    out = capsys.readouterr().out
    assert str(path) in out and "real clips" in out and "frame-shuffled clips" in out
