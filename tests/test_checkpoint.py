"""Checkpoints (vdm_ref.support.checkpoint): atomic writes, keep-last-k, round trips, compatibility checks."""

import json
import os

import numpy as np
import pytest

from vdm_ref.support import checkpoint as ckpt


def _arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {"params": {"conv_in": {"w": rng.standard_normal((1, 3, 3, 1, 4)).astype(np.float32),
                                   "b": np.zeros(4, np.float32)}},
            "opt": {"count": np.asarray(7, np.int32)}}


def test_flatten_unflatten_round_trip():
    tree = _arrays()
    flat = ckpt.flatten(tree)
    assert set(flat) == {"params/conv_in/w", "params/conv_in/b", "opt/count"}
    back = ckpt.unflatten(flat)
    np.testing.assert_array_equal(back["params"]["conv_in"]["w"], tree["params"]["conv_in"]["w"])


def test_save_load_round_trip_is_bit_exact(tmp_path):
    tree = _arrays()
    path = ckpt.save_checkpoint(tmp_path, 12, tree, {"seed": 3})
    assert path.name == "step_00000012"
    arrays, meta = ckpt.load_checkpoint(tmp_path)  # a run directory loads its newest checkpoint
    assert meta["step"] == 12 and meta["seed"] == 3 and meta["format"] == ckpt.FORMAT
    for k, v in ckpt.flatten(tree).items():
        got = ckpt.flatten(arrays)[k]
        assert got.dtype == v.dtype
        np.testing.assert_array_equal(got, v)


def test_keeps_only_the_last_k(tmp_path):
    for step in (1, 2, 3, 4, 5):
        ckpt.save_checkpoint(tmp_path, step, _arrays(step), {}, keep=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [4, 5]


def test_half_written_checkpoints_are_ignored_and_cleaned(tmp_path):
    ckpt.save_checkpoint(tmp_path, 1, _arrays(), {})
    root = ckpt.checkpoint_dir(tmp_path)
    # What a process killed mid-save leaves: a temporary, and a step directory without meta.json.
    (root / ".tmp_killed").mkdir()
    (root / ".tmp_killed" / "arrays.npz").write_bytes(b"partial")
    (root / "step_00000009").mkdir()
    assert ckpt.latest_checkpoint(tmp_path).name == "step_00000001"
    ckpt.save_checkpoint(tmp_path, 2, _arrays(), {})
    assert not (root / ".tmp_killed").exists()
    assert ckpt.latest_checkpoint(tmp_path).name == "step_00000002"


def test_resaving_a_step_replaces_it(tmp_path):
    ckpt.save_checkpoint(tmp_path, 3, _arrays(0), {"tag": "a"})
    ckpt.save_checkpoint(tmp_path, 3, _arrays(1), {"tag": "b"})
    _, meta = ckpt.load_checkpoint(tmp_path)
    assert meta["tag"] == "b" and len(ckpt.list_checkpoints(tmp_path)) == 1


def test_missing_or_corrupt_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint at"):
        ckpt.load_checkpoint(tmp_path)
    path = ckpt.save_checkpoint(tmp_path, 1, _arrays(), {})
    (path / "meta.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ckpt.CheckpointError, match="format"):
        ckpt.load_checkpoint(path)


def test_config_differences_and_shape_check_name_what_differs():
    diffs = ckpt.config_differences({"unet": {"channels": 16, "frames": 8}}, {"unet": {"channels": 32, "frames": 8}})
    assert diffs == ["unet.channels: 16 (checkpoint) vs 32 (now)"]
    with pytest.raises(ckpt.CheckpointError, match=r"conv_in/w: shape \(1, 3, 3, 1, 4\) in the checkpoint"):
        ckpt.check_shapes(_arrays()["params"], {"conv_in": {"w": (1, 3, 3, 1, 8), "b": (4,)}}, "parameters")


def test_nothing_but_complete_checkpoints_after_save(tmp_path):
    ckpt.save_checkpoint(tmp_path, 1, _arrays(), {})
    names = os.listdir(ckpt.checkpoint_dir(tmp_path))
    assert names == ["step_00000001"]


def test_export_for_sampling_keeps_only_the_ema(tmp_path):
    tree = {"params": {"w": np.ones(3, np.float32)}, "ema": {"w": np.full(3, 2.0, np.float32)},
            "opt": {"count": np.asarray(1)}}
    ckpt.save_checkpoint(tmp_path / "run", 4, tree, {"config": {"name": "x"}})
    out = ckpt.export_for_sampling(tmp_path / "run", tmp_path / "shipped")
    arrays, meta = ckpt.load_checkpoint(out)
    assert set(arrays) == {"ema"} and meta["step"] == 4 and meta["config"] == {"name": "x"}
    np.testing.assert_array_equal(arrays["ema"]["w"], 2.0)


def test_export_sets_sampling_defaults_it_knows(tmp_path):
    tree = {"ema": {"w": np.ones(3, np.float32)}}
    config = {"name": "x", "diffusion": {"guidance_weight": 0.0, "sampling_steps": 128}}
    ckpt.save_checkpoint(tmp_path / "run", 4, tree, {"config": config})
    out = ckpt.export_for_sampling(tmp_path / "run", tmp_path / "shipped", sampling={"guidance_weight": 1.5})
    _, meta = ckpt.load_checkpoint(out)
    assert meta["config"]["diffusion"] == {"guidance_weight": 1.5, "sampling_steps": 128}
    assert meta["export_sampling_was"] == {"guidance_weight": 0.0}
    with pytest.raises(ckpt.CheckpointError, match="guidance_wieght"):
        ckpt.export_for_sampling(tmp_path / "run", tmp_path / "other", sampling={"guidance_wieght": 1.5})
    assert not (tmp_path / "other").exists()
