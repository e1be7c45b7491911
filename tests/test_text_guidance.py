"""scripts/text_guidance (Table 5 at small scale): the diversity measures can fail, and the script
runs end to end on a tiny random text-conditioned checkpoint, writing every row of its JSON, a
report table from the JSON alone, and one-line errors for bad flags."""

import json
import math

import numpy as np
import pytest
from PIL import Image
from tiny_models import tiny_checkpoint

from scripts.text_guidance.__main__ import main
from scripts.text_guidance.measure import (
    caption_clips,
    centre_spread,
    fvd,
    i3d_logits,
    pairwise_rms,
)
from vdm_ref.support.data import MovingMNIST


def tiny_text_checkpoint(root) -> str:
    """The shared tiny text model, perturbed (a fresh one ignores its caption)."""
    return tiny_checkpoint(root, "text", noise=0.1)


def real_clips(n=3):
    ds = MovingMNIST(n, num_frames=4, resolution=32, digit_size=20, num_digits=1, speed=(1.0, 3.0),
                     split="test", seed=1234)
    return ds, ds.batch(np.arange(n))


def test_pairwise_rms_is_zero_for_copies_and_two_for_opposite_videos():
    _, x = real_clips()
    same = np.repeat(x[:1], 3, axis=0)
    assert pairwise_rms(same) == pytest.approx(0.0, abs=1e-6)  # float rounding of |a|² + |b|² − 2ab
    opposite = np.stack([np.ones_like(x[0]), -np.ones_like(x[0])])
    assert pairwise_rms(opposite) == pytest.approx(2.0)
    assert pairwise_rms(x) > 0.1  # three different real clips (one digit each on a black frame)
    with pytest.raises(ValueError, match="at least 2"):
        pairwise_rms(x[:1])


def test_centre_spread_measures_where_the_digit_starts():
    _, x = real_clips(1)
    shifted = np.stack([x[0], np.roll(x[0], 6, axis=2)])  # the same digit 6 px to the right
    spread, found = centre_spread(shifted, 20)
    assert found == 2 and spread == pytest.approx(3.0, abs=0.2)  # two points 6 px apart: std 3 px
    assert centre_spread(np.repeat(x[:1], 3, axis=0), 20) == (pytest.approx(0.0), 3)
    spread, found = centre_spread(np.full_like(shifted, -1.0), 20)  # no digit anywhere
    assert found == 0 and math.isnan(spread)


def test_caption_clips_finds_exactly_the_clips_of_a_caption():
    ds, _ = real_clips(200)
    caption = ds.caption(5)
    idx = caption_clips(ds, "  " + caption.upper() + " ", 3, 200)
    assert idx[0] <= 5 and all(ds.caption(i) == caption for i in idx)
    assert caption_clips(ds, "digit 7 is flying", 3, 200) == []


def test_fvd_inputs_are_repeated_to_nine_frames_and_identical_sets_score_zero():
    seen = []

    def embed(v):  # a stub I3D: the mean of each frame, so FVD of one set against itself is 0
        seen.append(v.shape)
        return v.mean(axis=(2, 3, 4))

    _, x = real_clips(4)
    logits, note = i3d_logits(embed, x)
    assert seen == [(4, 12, 32, 32, 3)] and "repeated 3x" in note  # ceil(9 / 4) = 3
    assert fvd(logits, logits)["fvd"] == pytest.approx(0.0, abs=1e-6)


def test_the_script_runs_and_reports_both_weights(tmp_path, capsys):
    ckpt = tiny_text_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "out"
    main(["run", "--checkpoint", ckpt, "--videos", "4", "--batch-size", "4", "--steps", "2", "--weights", "0", "2",
          "--seeds", "0", "--diversity-videos", "3", "--diversity-search", "500", "--no-fvd", "--out-dir", str(out)])
    r = json.loads((out / "seed0.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert r["complete"] and r["script"] == "scripts.text_guidance" and r["videos"] == 4
    assert set(r["rows"]) == {"w = 0", "w = 2"}
    for name, row in r["rows"].items():
        assert row["w"] == float(name.split("= ")[1]) and "fvd" not in row
        for key in ("fidelity", "digit", "motion", "fidelity_se", "seconds", "batch_seconds", "strip", "strip_captions"):
            assert key in row, (name, key)
        for rate in (row["fidelity"], row["digit"], row["motion"], row["diversity"]["fidelity"]):
            assert math.isfinite(rate) and 0.0 <= rate <= 1.0, (name, rate)
        assert row["scored"] == 4 and row["diversity"]["videos"] == 3
        assert 0.0 <= row["diversity"]["rms"] <= 2.0 and row["seconds"] > 0
        assert len(row["strip_captions"]) == 4 and (out / row["strip"]).is_file()
    # guidance acts: the same draws give other videos at w = 2 than at w = 0 (the strips differ)
    w0, w2 = (np.asarray(Image.open(out / r["rows"][n]["strip"])) for n in ("w = 0", "w = 2"))
    assert w0.shape == w2.shape and np.mean(w0 != w2) > 0.1
    real = r["real"]
    for which in ("ceiling", "floor"):
        assert 0.0 <= real[which]["fidelity"] <= 1.0 and real[which]["videos"] == 4
    assert "diversity" in real or "no real diversity" in real["diversity_note"]
    capsys.readouterr()
    text = main(["report", "--out-dir", str(out)])
    lines = text.splitlines()
    assert any(line.startswith("| 0 |") for line in lines) and any(line.startswith("| 2 |") for line in lines)
    assert "(ceiling)" in text and "(floor)" in text and "FVD not measured" in text
    assert text in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--weights", "-1"], "--weights -1: expected guidance weights w >= 0"),
    (["--videos", "1"], "--videos 1: expected >= 2"),
    (["--diversity-caption", "a cat"], "caption fidelity cannot score it"),
])
def test_bad_flags_are_one_line_errors_before_any_work(tmp_path, flags, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        main(["run", "--checkpoint", str(tmp_path / "missing"), "--no-fvd", "--out-dir", str(out), *flags])
    text = e.value.code
    assert isinstance(text, str) and "\n" not in text and text.startswith("error:") and message in text, text
    assert not out.exists()


def test_a_foreign_file_in_the_output_folder_is_not_overwritten(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "seed0.json").write_text('{"mine": true}')
    with pytest.raises(SystemExit, match="was not written by scripts.text_guidance"):
        main(["run", "--checkpoint", str(tmp_path / "missing"), "--no-fvd", "--seeds", "0", "--out-dir", str(out)])
    assert (out / "seed0.json").read_text() == '{"mine": true}'


@pytest.mark.parametrize("name", ["real.png", "seed0_w2.png"])
def test_a_foreign_image_in_the_output_folder_is_not_overwritten(tmp_path, name):
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_bytes(b"my picture")
    with pytest.raises(SystemExit, match=f"{name} exists and was not written by scripts.text_guidance"):
        main(["run", "--checkpoint", str(tmp_path / "missing"), "--no-fvd", "--seeds", "0", "--weights", "0", "2",
              "--out-dir", str(out)])
    assert (out / name).read_bytes() == b"my picture"


def test_condition_effect_reports_equal_errors_for_a_model_that_ignores_captions(tmp_path):
    """A fresh model (output layer zero: x̂ does not depend on c) gives three equal columns;
    the table is printed for every λ."""
    from scripts.text_guidance.condition_effect import condition_effect
    from vdm_fast.generation import load_model

    tiny_checkpoint(tmp_path, "text")
    rows = condition_effect(load_model(tmp_path), videos=3, logsnrs=(-2.0, 1.0))
    assert [r["logsnr"] for r in rows] == [-2.0, 1.0]
    for r in rows:
        assert r["true"] == r["shuffled"] == r["null"] == r["other digits"] == r["other motion"] > 0


def test_one_clause_changed():
    """`other_digits` changes every digit and nothing else; `other_motion` names the other axis."""
    import numpy as np

    from scripts.text_guidance.condition_effect import other_digits, other_motion

    cap = "digit 7 is bouncing up and down and digit 1 is moving right"
    rng = np.random.default_rng(0)
    for _ in range(20):
        new = other_digits(cap, rng)
        a, b = new.split(" and digit ")
        assert a.startswith("digit ") and a[6] != "7" and a[7:] == " is bouncing up and down"
        assert b[0] != "1" and b[1:] == " is moving right"
    assert other_motion(cap) == "digit 7 is bouncing left and right and digit 1 is moving down"
    assert other_motion("digit 3 is moving left and right") == "digit 3 is moving up and down"
    assert other_motion("digit 3 is standing still") == "digit 3 is standing still"
