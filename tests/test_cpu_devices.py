"""Splitting a CPU host into JAX devices (`--cpu-devices`, `vdm_fast.sharding.cpu_devices`): the
rule that picks the default, the error once JAX has started, and a training run on the split CPU
that ends with the parameters of the same run on one device."""

import json
import os

import numpy as np
import pytest

from test_train_loop import _final_params, _run, jax_cache  # noqa: F401  (the fixture)
from vdm_fast import sharding as shd


@pytest.fixture
def plain_env(monkeypatch):
    """No device count from XLA_FLAGS, and a machine of 2 cores."""
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.setattr(shd.os, "cpu_count", lambda: 2)


def test_default_is_two_devices_for_a_plain_data_parallel_run(plain_env):
    assert shd.cpu_devices(8) == shd.CPU_DEVICES == 2


@pytest.mark.parametrize("why, kwargs", [
    ("odd batch", dict(batch_size=7)),
    ("the user's mesh", dict(batch_size=8, data_parallel=1)),
    ("the user's mesh", dict(batch_size=8, data_parallel=2)),
    ("FSDP", dict(batch_size=8, fsdp=2)),
    ("multi-host", dict(batch_size=8, multi_host=True)),
])
def test_no_split_when_the_run_says_otherwise(plain_env, why, kwargs):
    assert shd.cpu_devices(**kwargs) is None, why


def test_no_split_on_one_core_or_under_xla_flags(plain_env, monkeypatch):
    monkeypatch.setattr(shd.os, "cpu_count", lambda: 1)
    assert shd.cpu_devices(8) is None
    monkeypatch.setattr(shd.os, "cpu_count", lambda: 2)
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
    assert shd.cpu_devices(8) is None


def test_split_after_jax_started_is_an_error_naming_the_count():
    import jax

    jax.devices()  # this test process has started JAX (conftest's 4 CPU devices)
    with pytest.raises(ValueError, match="already started with 4"):
        shd.split_cpu(2)
    with pytest.raises(ValueError, match="expected >= 1"):
        shd.split_cpu(0)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the default splits hosts of >= 2 cores")
def test_training_on_the_split_cpu_matches_one_device(tmp_path, jax_cache):  # noqa: F811
    """The default run (no XLA_FLAGS, --data-parallel -1) trains on 2 CPU devices and reaches the
    parameters of --cpu-devices 1 to float32 round-off (the same batches, the gradient all-reduced)."""
    steps = ["--data-parallel", "-1", "--steps", "3", "--checkpoint-every", "1000"]
    _run(jax_cache, *steps, "--run-dir", str(tmp_path / "split"))
    _run(jax_cache, *steps, "--cpu-devices", "1", "--run-dir", str(tmp_path / "one"))
    meshes = [json.loads((tmp_path / r / "summary.json").read_text())["devices"]["mesh"] for r in ("split", "one")]
    assert meshes == [{"data": 2, "fsdp": 1}, {"data": 1, "fsdp": 1}]
    got, _ = _final_params(tmp_path / "split")
    want, _ = _final_params(tmp_path / "one")
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-5, err_msg=k)
