"""--label and --caption from the command line (issue 16): every generation command and
`evaluate` on a tiny class- and a tiny text-conditioned checkpoint, through `cli.main`, with the
one condition encoder of `vdm_fast.inputs`; odd captions give a sample, bad conditions one line."""

import json
import re

import numpy as np
import pytest
import tiny_models
from tiny_models import one_line_error

import cli
from vdm_fast.inputs import CAPTION_TOKENS, ConditionEncoder

FAST = ["--steps", "2", "--batch-size", "2", "--no-progress", "--format", "gif"]


def tiny_config(conditioning: str, **unet):
    """The shared tiny model (tests/tiny_models.py) with w = 1, so a caption or label exercises Eq. 6."""
    return tiny_models.tiny_config(conditioning, guidance_weight=1.0, **unet)


def tiny_checkpoint(root, conditioning: str, **unet) -> str:
    return tiny_models.tiny_checkpoint(root, conditioning, guidance_weight=1.0, **unet)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return {"text": tiny_checkpoint(tmp_path_factory.mktemp("text"), "text"),
            "class": tiny_checkpoint(tmp_path_factory.mktemp("class"), "class", num_classes=10),
            "none": tiny_checkpoint(tmp_path_factory.mktemp("none"), "none")}


CONDITION = {"text": ["--caption", "digit 7 is moving right"], "class": ["--label", "7"]}
#: command -> (its own flags, frames of the output): clip 0 of the model's Moving MNIST.
COMMANDS = {
    "sample": ([], 4),
    "predict": (["--clip", "0", "--given-frames", "1", "--length", "4"], 4),
    "extend": (["--clip", "0", "--length", "6", "--context-frames", "2"], 6),
    "interpolate": (["--clip", "0", "--factor", "3"], 4),  # frames 0, 3 of the clip -> (2 - 1) * 3 + 1
    "upsample": (["--clip", "0", "--factor", "2"], 4),
}




@pytest.mark.parametrize("kind", ["class", "text"])
def test_every_command_runs_with_a_condition(checkpoints, kind, tmp_path, capsys):
    for name, (flags, frames) in COMMANDS.items():
        out = tmp_path / name
        cli.main([name, "--checkpoint", checkpoints[kind], "--out", str(out), *FAST, *CONDITION[kind], *flags])
        video = np.load(out.with_suffix(".npz"))["video"]
        assert video.shape == (2, frames, 8, 8, 1), name
        assert np.all(np.isfinite(video)) and out.with_suffix(".gif").is_file() and out.with_suffix(".png").is_file()
    assert "conditioning " + kind in capsys.readouterr().out


def test_sample_records_its_caption_for_caption_fidelity(checkpoints, tmp_path):
    """OUT.json holds the caption, so the caption-fidelity measure reads it with --from-npz."""
    from vdm_ref.support.eval.caption_fidelity import load_captions

    out = tmp_path / "s.gif"
    cli.main(["sample", "--checkpoint", checkpoints["text"], "--out", str(out), *FAST[:-2], "--caption",
              "digit 3 is moving left", "--guidance-weight", "2"])
    meta = json.loads((tmp_path / "s.json").read_text())
    assert (meta["caption"], meta["guidance_weight"]) == ("digit 3 is moving left", 2.0)
    assert load_captions(tmp_path / "s.npz", 2, None) == ["digit 3 is moving left"] * 2


def test_label_each_gives_every_video_its_own_class(checkpoints, tmp_path):
    """--label each: video i is conditioned on class i mod 10 (its one-hot reaches the sampler),
    and OUT.json records each video's class for sample_quality's `on_label`."""
    from vdm_fast.generation.commands import Sample
    from vdm_fast.generation.model import open_model

    model = open_model(checkpoints["class"])
    cond = Sample(label="each", batch_size=12).condition(model)
    assert np.array_equal(np.asarray(cond), np.eye(10, dtype=np.float32)[[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]])
    assert np.array_equal(np.asarray(Sample(label=4, batch_size=2).condition(model)), np.eye(10)[[4, 4]])
    out = tmp_path / "s.gif"
    cli.main(["sample", "--checkpoint", checkpoints["class"], "--out", str(out), *FAST[:-2], "--label", "each"])
    meta = json.loads((tmp_path / "s.json").read_text())
    assert (meta["label"], meta["labels"]) == ("each", [0, 1])
    video = np.load(tmp_path / "s.npz")["video"]
    assert not np.allclose(video[0], video[1])


def test_a_class_model_samples_each_class_unless_told(checkpoints, tmp_path, capsys):
    """Neither --label nor --caption on a class-conditional model: --label each, with a note and
    the labels recorded; --label null: the null condition (c = 0), nothing recorded per video."""
    from vdm_fast.generation.commands import Sample
    from vdm_fast.generation.model import open_model

    model = open_model(checkpoints["class"])
    assert np.array_equal(np.asarray(Sample(batch_size=3).condition(model)), np.eye(10)[[0, 1, 2]])
    assert "video i gets class i mod 10 (--label each; --label N for one class, --label null for none), " \
           "guided with w = 1 (Eq. 6" in capsys.readouterr().err  # the tiny config's w
    assert Sample(label="null", batch_size=3).condition(model) is None
    assert Sample(batch_size=3).condition(open_model(checkpoints["text"])) is None  # no caption: null
    from vdm_fast.generation.commands import Cascade, Predict

    assert Predict(clip=0, batch_size=3).condition(model) is None  # the input video says what to draw
    assert Cascade(batch_size=3).condition(model) is None  # the base's video says what to draw
    out = tmp_path / "s.gif"
    cli.main(["sample", "--checkpoint", checkpoints["class"], "--out", str(out), *FAST[:-2]])
    meta = json.loads((tmp_path / "s.json").read_text())
    assert (meta["label"], meta["labels"], meta["guidance_weight"]) == ("each", [0, 1], 1.0)  # w in use
    cli.main(["sample", "--checkpoint", checkpoints["class"], "--out", str(tmp_path / "n.gif"), *FAST[:-2],
              "--label", "null"])
    meta = json.loads((tmp_path / "n.json").read_text())
    assert meta["label"] == "null" and "labels" not in meta and "guidance_weight" not in meta  # no w at c = 0


@pytest.mark.parametrize("caption", [
    "the seven walks slowly to the left",             # other verbs
    "right is where digit 7 is moving",               # other word order
    "digit 3 is moving up and digit 8 is moving down",  # two digits
    "digit 7 " * 200,                                  # longer than the training captions: truncated
    "Ziffer 7 bewegt sich nach rechts ✓",             # other language, non-ASCII
], ids=["verbs", "word-order", "two-digits", "long", "non-ascii"])
def test_captions_the_data_never_used_give_a_sample(checkpoints, caption, tmp_path, capsys):
    out = tmp_path / "s"
    cli.main(["sample", "--checkpoint", checkpoints["text"], "--out", str(out), *FAST, "--caption", caption])
    assert np.load(out.with_suffix(".npz"))["video"].shape == (2, 4, 8, 8, 1)
    if len(caption) > 1000:
        assert f"the model reads the first {CAPTION_TOKENS}" in capsys.readouterr().err


def test_unfamiliar_captions_are_named():
    """Clause by clause against a model's training captions: the grammar, the number of digits,
    a motion no training caption has; a familiar caption (any digit) gives None."""
    from vdm_ref.support.eval.caption_fidelity import unfamiliar_caption

    seen = ["digit 3 is moving left and right", "digit 5 is bouncing up and down"]
    assert unfamiliar_caption("digit 7 is moving left and right", seen) is None
    assert unfamiliar_caption("Digit 0 is bouncing up and down.", seen) is None
    assert "'moving right' describes no digit" in unfamiliar_caption("digit 7 is moving right", seen)
    assert "names 2 digits; the training captions name 1" in unfamiliar_caption(
        "digit 3 is moving left and right and digit 5 is bouncing up and down", seen)
    assert "not of the form" in unfamiliar_caption("the seven walks slowly to the left", seen)


def test_sample_notes_an_unfamiliar_caption(checkpoints, tmp_path, capsys):
    """The note names what the training captions lack and the sample is still written."""
    from vdm_fast.generation import load_model
    from vdm_fast.inputs import moving_mnist_data

    model = load_model(checkpoints["text"])
    familiar = moving_mnist_data(model, 1, num_frames=model.frames).captions[0]
    for i, (caption, note) in enumerate(((familiar, None), ("the seven walks slowly to the left", "not of the form"))):
        out = tmp_path / f"s{i}"
        cli.main(["sample", "--checkpoint", checkpoints["text"], "--out", str(out), *FAST, "--caption", caption])
        err = capsys.readouterr().err
        assert ("note:" in err) == (note is not None) and (note is None or note in err), err
        assert out.with_suffix(".npz").is_file()


@pytest.mark.parametrize("kind, flags, message", [
    ("text", ["--caption", ""], "--caption is empty"),
    ("text", ["--caption", "   "], "--caption is empty"),
    ("class", ["--label", "10"], r"--label 10: expected a class in \[0, 10\)"),
    ("class", ["--label", "-1"], r"--label -1: expected a class in \[0, 10\)"),
    ("none", ["--caption", "digit 7"], "--caption: the model is unconditional"),
    ("none", ["--label", "3"], "--label: the model is unconditional"),
    ("none", ["--label", "each"], "--label: the model is unconditional"),
    ("none", ["--label", "null"], "--label null: the model is unconditional"),
    ("text", ["--label", "null"], "--label null: the model is text-conditional; leave out --caption"),
    ("class", ["--label", "null", "--guidance-weight", "2"], "--guidance-weight 2.0 needs a condition"),
    ("text", ["--label", "each"], "the model is text-conditional; pass --caption, not --label"),
    ("text", ["--label", "3"], "the model is text-conditional; pass --caption, not --label"),
    ("class", ["--caption", "digit 7"], "the model is class-conditional; pass --label, not --caption"),
    ("class", ["--label", "3", "--caption", "digit 3"], "not both"),
    ("text", ["--guidance-weight", "2"], "--guidance-weight 2.0 needs a condition"),
    ("none", ["--guidance-weight", "2"], "the model is unconditional"),
])
def test_a_condition_the_model_cannot_take_is_one_line(checkpoints, kind, flags, message, tmp_path, no_sampling):
    text = one_line_error(["sample", "--checkpoint", checkpoints[kind], "--out", str(tmp_path / "o"), *FAST, *flags])
    assert re.search(message, text), text
    assert not list(tmp_path.iterdir())


def test_caption_encoding_is_one_row_per_caption_as_in_training():
    """B equal captions give B equal rows (the CLI once collapsed them to one), each the MiniLM
    encoding at the training length; the null condition is all-zero tokens."""
    from vdm_fast.inputs import null_condition
    from vdm_fast.text_encoder import TextEncoder

    enc = ConditionEncoder(tiny_config("text").unet)
    tokens, mask = enc.captions(["digit 1 is moving up"] * 3 + ["digit 2 is moving down"])
    assert tokens.shape == (4, CAPTION_TOKENS, 384) and mask.shape == (4, CAPTION_TOKENS)
    np.testing.assert_array_equal(tokens[0], tokens[2])
    assert np.abs(tokens[0] - tokens[3]).max() > 1e-3
    ref, ref_mask = TextEncoder()(["digit 2 is moving down"], max_length=CAPTION_TOKENS)
    # the same encoder; a batch of 2 captions vs 1 reorders float32 sums: |diff| ~ 2e-6 on values ~ 1
    np.testing.assert_allclose(tokens[3], np.asarray(ref)[0], atol=2e-5)
    np.testing.assert_array_equal(mask[3], np.asarray(ref_mask)[0])
    null_tokens, null_mask = null_condition((tokens, mask))
    assert not np.any(np.asarray(null_tokens)) and np.array_equal(np.asarray(null_mask), mask)


def test_evaluate_with_captions_on_the_real_i3d(checkpoints, tmp_path, capsys):
    """`evaluate` on the text model: c from the captions of the real clips, w = 1, the real I3D."""
    out = tmp_path / "r.json"
    cli.main(["evaluate", "--checkpoint", checkpoints["text"], "--protocols", "unconditional", "--num-samples", "2",
              "--fvd-splits", "1", "--batch-size", "2", "--i3d-batch-size", "2", "--steps", "2",
              "--guidance-weight", "1", "--no-progress", "--out", str(out)])
    res = json.loads(out.read_text())
    (row,) = res["runs"]
    assert res["feature_network"].startswith("I3D") and res["sampler"]["guidance_weight"] == 1.0
    assert np.isfinite(row["fvd"]) and row["num_samples"] == 2 and 1.0 - 1e-6 <= row["is"] <= 400.0
    assert "conditioning text" in capsys.readouterr().out


def test_evaluate_with_labels(checkpoints, tmp_path, monkeypatch):
    """`evaluate` on the class model (one-hot c from the clips' labels); a stub feature network
    stands in for I3D, which the text test runs."""
    from vdm_fast.evaluation import run

    def stub(*args, **kwargs):
        return lambda v: np.stack([np.asarray(v).mean((1, 2, 3, 4)), np.asarray(v).std((1, 2, 3, 4))], axis=1)

    monkeypatch.setattr(run, "default_embed", stub)
    out = tmp_path / "r.json"
    cli.main(["evaluate", "--checkpoint", checkpoints["class"], "--protocols", "bair", "--num-samples", "2",
              "--fvd-splits", "1", "--batch-size", "2", "--steps", "2", "--guidance-weight", "1", "--no-progress",
              "--out", str(out)])
    (row,) = json.loads(out.read_text())["runs"]
    assert row["given_frames_max_abs_error"] == 0.0 and np.isfinite(row["fvd"])


@pytest.fixture(scope="module")
def base_checkpoints(tmp_path_factory):
    """Tiny Fig. 2 base models: 4x4 frames at frameskip 2 (half the size, half the rate of the
    8x8 models above), text-conditioned and unconditional."""
    return {kind: tiny_checkpoint(tmp_path_factory.mktemp(f"base-{kind}"), kind, image_size=4, frameskip=2)
            for kind in ("text", "none")}


def test_cascade_writes_the_final_video_and_each_stage(checkpoints, base_checkpoints, tmp_path, capsys):
    """`cascade`: the text base samples 4 frames of 4x4, the unconditional 8x8 model makes
    (4 − 1)·2 + 1 = 7 frames of them; the stages are written beside the final video."""
    out = tmp_path / "c.gif"
    cli.main(["cascade", "--checkpoint", checkpoints["none"], "--base", base_checkpoints["text"], "--out", str(out),
              *FAST[:-2], "--caption", "digit 7 is moving right"])
    printed = capsys.readouterr().out
    assert "second stage (x2 in space, x2 in time): 7 frames 8x8" in printed, printed
    video = np.load(tmp_path / "c.npz")["video"]
    assert video.shape == (2, 7, 8, 8, 1)
    for name in ("c.gif", "c.png", "c_base.gif", "c_base.png", "c_stages.gif", "c_stages.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    meta = json.loads((tmp_path / "c.json").read_text())
    assert (meta["factor"], meta["frameskip"], meta["base_video"]) == (2, 2, [2, 4, 4, 4, 1])
    assert set(meta["seconds"]) == {"base", "second_stage"} and all(v > 0 for v in meta["seconds"].values())


def test_held_video_repeats_pixels_and_holds_frames():
    from vdm_fast.generation.commands import held_video

    low = np.arange(3 * 2 * 2, dtype=np.float32).reshape(1, 3, 2, 2, 1) / 12
    held = held_video(low, 2, 2, 5)
    assert held.shape == (1, 5, 4, 4, 1)
    np.testing.assert_array_equal(held[0, 0], held[0, 1])
    np.testing.assert_array_equal(held[0, 4, ::2, ::2], low[0, 2])
    np.testing.assert_array_equal(held[0, 2, 1::2, 1::2], low[0, 1])


@pytest.mark.parametrize("flags, message", [
    (["--caption", "digit 1 is moving up"], "--caption: neither the base .* nor --checkpoint .* is conditional"),
    (["--w-r", "0"], "--w-r 0: the second stage conditions on the base's video only through reconstruction"),
    (["--frameskip", "4"], "--frameskip 4: expected < the second stage's block of 4 frames"),
])
def test_cascade_errors_are_one_line(checkpoints, base_checkpoints, flags, message, tmp_path, no_sampling):
    text = one_line_error(["cascade", "--checkpoint", checkpoints["none"], "--base", base_checkpoints["none"],
                           "--out", str(tmp_path / "o"), *FAST, *flags])
    assert re.search(message, text), text


def test_cascade_refuses_a_base_of_another_size(checkpoints, tmp_path, tmp_path_factory, no_sampling):
    base = tiny_checkpoint(tmp_path_factory.mktemp("base-3"), "none", image_size=6, channel_mult=(1,))
    text = one_line_error(["cascade", "--checkpoint", checkpoints["none"], "--base", base,
                           "--out", str(tmp_path / "o"), *FAST])
    assert "--base makes 6x6 frames, which do not divide the second stage's 8x8" in text, text


def test_cascade_refuses_a_base_with_nothing_to_upsample(checkpoints, tmp_path, no_sampling):
    text = one_line_error(["cascade", "--checkpoint", checkpoints["none"], "--base", checkpoints["none"],
                           "--out", str(tmp_path / "o"), *FAST])
    assert "at the second stage's frame rate: nothing to upsample" in text, text


def test_cascade_conditions_only_the_stages_that_take_the_flag(checkpoints, base_checkpoints):
    """A caption reaches the text base and leaves a class-conditional second stage at its null
    condition (the shipped default is class-conditional); a label the other way round; a flag no
    stage takes is one error."""
    from vdm_fast.generation.commands import Cascade
    from vdm_fast.generation.model import open_model
    from vdm_fast.inputs import InputError

    base, model = open_model(base_checkpoints["text"]), open_model(checkpoints["class"])
    c_base, c_model = Cascade(caption="digit 7 is moving left and right", batch_size=2).stage_conditions(base, model)
    assert c_model is None and np.asarray(c_base[0]).shape[0] == 2
    c_base, c_model = Cascade(label=3, batch_size=2).stage_conditions(base, model)
    assert c_base is None and np.array_equal(np.asarray(c_model), np.eye(10)[[3, 3]])
    with pytest.raises(InputError, match="neither the base .* is class-conditional"):
        Cascade(label=3, batch_size=2).stage_conditions(base, open_model(checkpoints["text"]))
