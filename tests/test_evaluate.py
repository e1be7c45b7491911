"""`python cli.py evaluate`: protocols adapted to the model's frames, what I3D is shown, FVD with
its spread, clear errors before any sampling, and an end-to-end run on a tiny random model with a
stub feature network (the real I3D only in the `slow` test)."""

import dataclasses
import json

import numpy as np
import pytest

from vdm_fast import evaluation as E
from vdm_fast.generation import engine
from vdm_fast.inputs import UsageError
from vdm_ref import configs as C
from vdm_ref.support.checkpoint import save_checkpoint
from vdm_ref.metrics import frechet_distance_from_features


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random model (4 frames of 8x8x1, 2 sampling steps) saved as a training run saves it."""
    from vdm_ref.network import init

    cfg = C.get_preset("tiny")
    cfg = dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, frames=4, image_size=8, in_channels=1,
                                                            out_channels=1),
                              diffusion=dataclasses.replace(cfg.diffusion, sampling_steps=2))
    params = init(cfg.unet, 0)
    run = tmp_path_factory.mktemp("run")
    save_checkpoint(run, 10, {"params": params, "ema": params},
                    {"config": dataclasses.asdict(cfg),
                     "data": {"dataset": "moving_mnist", "mnist_digit_size": 4, "mnist_digits": 1}})
    return run


def stub_embed(videos):
    """A cheap stand-in for I3D: 6-d 'logits' from per-video summary statistics (deterministic)."""
    v = np.asarray(videos, np.float64)
    assert v.shape[-1] == 3 and v.shape[1] >= E.I3D_MIN_FRAMES  # what I3D would be shown
    t = np.abs(np.diff(v, axis=1)).mean(axis=(1, 2, 3, 4))
    return np.stack([v.mean((1, 2, 3, 4)), v.std((1, 2, 3, 4)), t, v[:, 0].mean((1, 2, 3)),
                     v[:, -1].mean((1, 2, 3)), (v > 0).mean((1, 2, 3, 4))], axis=1)


@pytest.fixture
def no_sampling(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("sampling started despite bad input")

    monkeypatch.setattr(engine, "sample_window", fail)


# ---------------------------------------------------------------------------------------------
# Protocols and I3D input


def test_protocols_follow_the_paper_at_16_frames_and_adapt_to_shorter_models():
    assert (E.plan_protocol("bair", 16).given, E.plan_protocol("bair", 16).length) == (1, 16)
    assert (E.plan_protocol("kinetics", 16).given, E.plan_protocol("kinetics", 16).length) == (5, 16)
    assert "as in the paper" in E.plan_protocol("bair", 16).note
    b8 = E.plan_protocol("bair", 8)
    assert (b8.given, b8.length) == (1, 8) and "1 -> 7 on 8 frames (paper: 1 -> 15" in b8.note
    k8 = E.plan_protocol("kinetics", 8)
    assert (k8.given, k8.length) == (5, 8) and "5 -> 3" in k8.note
    long = E.plan_protocol("bair", 8, length=16)
    assert long.length == 16 and "block by block" in long.note and long.conditional
    ext = E.plan_protocol("extend", 8, extend_factor=4)
    assert (ext.given, ext.length, ext.conditional) == (0, 32, True)
    unc = E.plan_protocol("unconditional", 8)
    assert (unc.given, unc.length, unc.conditional) == (0, 8, False)


def test_impossible_protocols_are_clear_errors():
    with pytest.raises(E.EvaluationError, match="conditions on 5 frames, but the model's block is 4"):
        E.plan_protocol("kinetics", 4)
    with pytest.raises(E.EvaluationError, match="expected one of"):
        E.plan_protocol("ucf", 16)
    with pytest.raises(E.EvaluationError, match="extend_factor=1"):
        E.plan_protocol("extend", 8, extend_factor=1)


def test_i3d_input_is_rgb_with_at_least_9_frames_and_says_what_it_did():
    grey = np.linspace(-1, 1, 2 * 8 * 4 * 4).reshape(2, 8, 4, 4, 1).astype(np.float32)
    x, note = E.i3d_input(grey)
    assert x.shape == (2, 16, 4, 4, 3)
    np.testing.assert_array_equal(x[:, 0], x[:, 1])  # frame 0 shown twice
    np.testing.assert_array_equal(x[:, 2, ..., 2], grey[:, 1, ..., 0])
    assert "grey repeated over RGB" in note and "each frame repeated 2x -> 16 frames" in note
    rgb = np.zeros((1, 9, 4, 4, 3), np.float32)
    x, note = E.i3d_input(rgb)
    assert x.shape == rgb.shape and note == ""
    assert E.repeat_factor(3) == 3 and E.repeat_factor(4) == 3 and E.repeat_factor(5) == 2
    with pytest.raises(E.EvaluationError, match="I3D needs at least 9"):
        E.i3d_input(grey, short_clips="refuse")


def test_fvd_spread_is_the_fvd_of_disjoint_splits():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((12, 3)), rng.standard_normal((12, 3)) + 0.5
    r = E.fvd_with_spread(a, b, 3)
    assert r["fvd"] == pytest.approx(float(frechet_distance_from_features(a, b)), rel=1e-12)
    parts = [float(frechet_distance_from_features(a[i:i + 4], b[i:i + 4])) for i in (0, 4, 8)]
    np.testing.assert_allclose(r["fvd_split_values"], parts, rtol=1e-12)
    assert r["fvd_split_mean"] == pytest.approx(np.mean(parts)) and r["fvd_split_std"] == pytest.approx(np.std(parts))
    assert E.fvd_with_spread(a, a, 2)["fvd"] == pytest.approx(0.0, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# Errors before long work


def test_missing_checkpoint_is_a_clear_error(tmp_path, no_sampling):
    with pytest.raises(UsageError, match="no checkpoint at"):
        E.Evaluate(checkpoint=str(tmp_path / "nope")).run(embed=stub_embed)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_samples=1), "FVD needs at least 2 videos"),
    (dict(num_samples=4, fvd_splits=3), "fvd_splits=3"),
    (dict(protocols=("kinetics",)), "conditions on 5 frames, but the model's block is 4"),
    (dict(short_clips="refuse"), "I3D needs at least 9"),
    (dict(guidance_weight=2.0), "the model is unconditional"),
    (dict(steps=1), "--steps 1: expected >= 2"),
    (dict(protocols=()), "no protocol given"),
])
def test_bad_requests_fail_before_sampling(checkpoint, tmp_path, no_sampling, kwargs, message):
    kw = dict(checkpoint=str(checkpoint), protocols=("unconditional", "bair"), num_samples=4, fvd_splits=2, progress=False,
              out=str(tmp_path / "r.json"))
    kw.update(kwargs)
    with pytest.raises(UsageError, match=message):
        E.Evaluate(**kw).run(embed=stub_embed)
    assert not (tmp_path / "r.json").exists()


def test_short_clips_refused_unless_generated_long_enough():
    """With --short-clips refuse, 4-frame protocols fail, but --length 12 (block by block) passes the check."""
    s = E.EvalSettings(protocols=("bair",), num_samples=4, fvd_splits=2, short_clips="refuse", length=12)
    (p,) = s.check(4)
    assert p.length == 12


# ---------------------------------------------------------------------------------------------
# End to end on a tiny random model


def test_evaluate_end_to_end_with_a_stub_feature_network(checkpoint, tmp_path, capsys):
    out = tmp_path / "res.json"
    res = E.Evaluate(checkpoint=str(checkpoint), protocols=("unconditional", "bair", "extend"),
                     methods=("reconstruction", "replacement"), num_samples=4, batch_size=2, extend_factor=2,
                     fvd_splits=2, is_splits=2, progress=True, out=str(out),
                     save_videos=str(tmp_path / "v")).run(embed=stub_embed)
    saved = json.loads(out.read_text())
    assert saved["runs"] == json.loads(json.dumps(res["runs"]))
    rows = {(r["protocol"], r["method"]): r for r in res["runs"]}
    assert set(rows) == {("unconditional", "none"), ("bair", "reconstruction"), ("bair", "replacement"),
                         ("extend", "reconstruction"), ("extend", "replacement")}
    for r in rows.values():
        assert r["num_samples"] == 4 and np.isfinite(r["fvd"]) and r["fvd"] >= -1e-9
        assert len(r["fvd_split_values"]) == 2 and r["is"] >= 1.0 - 1e-9
        k = 3 if r["length"] == 4 else 2  # 4 frames -> 12, 8 -> 16 for I3D, said plainly
        assert f"each frame repeated {k}x" in r["i3d_input"] and 0.0 <= r["clipped_fraction"] <= 1.0
    assert rows["bair", "reconstruction"]["given_frames_max_abs_error"] == 0.0
    assert rows["bair", "replacement"]["w_r"] == 0.0 and rows["bair", "reconstruction"]["w_r"] > 0
    assert rows["extend", "reconstruction"]["length"] == 8
    assert rows["extend", "replacement"]["coherence"]["boundaries"] == [4, 6]  # windows 0-3, 2-5, 4-7
    assert set(res["real"]) == {"4", "8"}
    assert (tmp_path / "v" / "extend_replacement.png").is_file() and (tmp_path / "v" / "real_8.png").is_file()
    printed = capsys.readouterr()
    assert "FVD (all)" in printed.out and "1 -> 3 on 4 frames (paper: 1 -> 15" in printed.out
    assert "each frame repeated" in printed.out and "real data" in printed.out
    assert "evaluate" in printed.err  # the progress bar


def test_same_seed_same_numbers(checkpoint, tmp_path):
    kw = dict(checkpoint=str(checkpoint), protocols=("bair",), num_samples=4, batch_size=2, fvd_splits=1,
              progress=False)
    a = E.Evaluate(out=str(tmp_path / "a.json"), **kw).run(embed=stub_embed)
    b = E.Evaluate(out=str(tmp_path / "b.json"), **kw).run(embed=stub_embed)
    assert a["runs"][0]["fvd"] == b["runs"][0]["fvd"]


def test_cli_evaluate_help_shows_its_flags(capsys):
    """`python cli.py evaluate --help` runs and lists the settings and the command's own flags."""
    import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["evaluate", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--checkpoint", "--protocols", "--num-samples", "--fvd-splits", "--out", "--save-videos"):
        assert flag in text, flag


@pytest.mark.slow
def test_evaluate_with_the_real_i3d(checkpoint, tmp_path):
    """The default feature network: I3D Kinetics-400 logits (about 3 s per clip on a 2-core CPU)."""
    res = E.Evaluate(checkpoint=str(checkpoint), protocols=("bair",), num_samples=4, batch_size=4, fvd_splits=1,
                     i3d_batch_size=4, progress=False, out=str(tmp_path / "r.json")).run()
    r = res["runs"][0]
    assert res["feature_network"].startswith("I3D") and np.isfinite(r["fvd"]) and 1.0 <= r["is"] <= 400.0
