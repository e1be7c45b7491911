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


def test_on_label_counts_frames_of_the_requested_class():
    """Real clips asked for their own digit score `on_label` = recognisable; asked for another
    digit, ~0; without labels there is no `on_label`."""
    from vdm_ref.support.data import MovingMNIST

    ds = MovingMNIST(12, num_frames=6, resolution=32, digit_size=20, num_digits=1, speed=(1.0, 3.0),
                     split="test", seed=4321)
    video = ds.batch(np.arange(12))
    own = np.array([ds.spec(i).labels[0] for i in range(12)])
    right = digit_sample_quality(video, 20, labels=own)
    wrong = digit_sample_quality(video, 20, labels=(own + 1) % 10)
    assert right["on_label"] > 0.6 and right["on_label"] <= right["recognisable"]
    assert right["on_label"] >= right["recognisable"] - 0.05  # the classifier is 95.7 % accurate
    assert wrong["on_label"] < 0.1
    assert "on_label" not in digit_sample_quality(video, 20)
    with pytest.raises(ValueError, match="one class per video"):
        digit_sample_quality(video, 20, labels=own[:3])


def test_most_common_digit_measures_variety():
    """Real clips spread over the classes; one clip repeated is all one digit, named; frames
    with nothing recognised have no most common digit."""
    from vdm_ref.support.data import MovingMNIST

    ds = MovingMNIST(12, num_frames=6, resolution=32, digit_size=20, num_digits=1, speed=(1.0, 3.0),
                     split="test", seed=4321)
    video = ds.batch(np.arange(12))
    real = digit_sample_quality(video, 20)
    assert real["most_common_share"] < 0.4
    counts = np.bincount([ds.spec(i).labels[0] for i in range(12)], minlength=10)
    assert real["most_common_share"] >= counts.max() / 12 - 0.15  # the classifier's errors aside
    k = next(i for i in range(12) if digit_sample_quality(video[i:i + 1], 20)["recognisable"] > 0.5)
    same = digit_sample_quality(np.repeat(video[k:k + 1], 4, axis=0), 20)
    assert same["most_common_share"] == 1.0 and same["most_common"] == ds.spec(k).labels[0]
    blank = digit_sample_quality(-np.ones((2, 4, 32, 32, 1)), 20)
    assert blank["most_common"] is None and blank["most_common_share"] == 0.0


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
    assert "on label" not in out


def test_cli_reads_the_requested_labels_beside_the_npz(tmp_path, capsys, refs):
    """`python cli.py sample --label ...` writes "labels" into OUT.json; the table gains a column."""
    import json

    path = tmp_path / "s.npz"
    np.savez(path, video=refs["real clips"][:4].astype(np.float32))
    (tmp_path / "s.json").write_text(json.dumps({"label": "each", "labels": [0, 1, 2, 3]}))
    main([str(path), "--reference-videos", "0"])
    header, _, row = capsys.readouterr().out.splitlines()
    assert header.endswith("on label |") and row.count("|") == header.count("|")
    (tmp_path / "s.json").write_text(json.dumps({"labels": [0, 1]}))
    with pytest.raises(SystemExit):
        main([str(path), "--reference-videos", "0"])
    assert "2 labels for 4 videos" in capsys.readouterr().err
    (tmp_path / "s.json").write_text("{broken")
    with pytest.raises(SystemExit):
        main([str(path), "--reference-videos", "0"])
    assert "not the JSON object" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing.npz"), "--reference-videos", "0"])
    assert "missing.npz" in capsys.readouterr().err
    (tmp_path / "cut.npz").write_bytes(path.read_bytes()[:100])  # a truncated file: one line, no traceback
    with pytest.raises(SystemExit):
        main([str(tmp_path / "cut.npz"), "--reference-videos", "0"])
    assert "cut.npz" in capsys.readouterr().err
