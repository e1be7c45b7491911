"""How a training process lays out a CPU host (`--cpu-devices`, `--batch-parts`,
`vdm_fast.cpu_host`, `vdm_fast.sharding.cpu_batch_parts`): the rule that picks the default parts,
the errors once JAX has started, the heap that keeps a step's buffers, and training runs on the
default layout and on a split CPU that end with the same parameters."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from test_train_loop import _final_params, _run, jax_cache  # noqa: F401  (the fixture)
from vdm_fast import cpu_host
from vdm_fast import sharding as shd

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(shd.os, "cpu_count", lambda: 2)


def _mesh(n):
    return shd.make_mesh((n,), ("data",), devices=jax.devices()[:n])


def test_default_is_two_parts_on_one_cpu_device(two_cores):
    assert shd.cpu_batch_parts(_mesh(1), 8) == shd.CPU_BATCH_PARTS == 2


@pytest.mark.parametrize("why, devices, batch, cores", [
    ("odd batch", 1, 7, 2), ("one core", 1, 8, 1), ("several devices", 2, 8, 2), ("several devices", 4, 8, 2)])
def test_one_part_otherwise(monkeypatch, why, devices, batch, cores):
    monkeypatch.setattr(shd.os, "cpu_count", lambda: cores)
    assert shd.cpu_batch_parts(_mesh(devices), batch) == 1, why


def test_after_jax_started_a_split_is_an_error_and_the_default_leaves_jax_as_it_is():
    jax.devices()  # this test process has started JAX (conftest's 4 CPU devices)
    with pytest.raises(ValueError, match="already started with 4"):
        shd.split_cpu(2)
    with pytest.raises(ValueError, match="expected >= 1"):
        shd.split_cpu(0)
    with pytest.raises(ValueError, match="already started"):
        cpu_host.run_on_calling_thread()
    cpu_host.prepare()  # one device: nothing to change once JAX runs (a notebook), and no error
    assert jax.config.values["jax_cpu_enable_async_dispatch"]


_FAULTS = """
import resource, sys
from vdm_fast import cpu_host
if sys.argv[1] == "calling-thread":
    cpu_host.prepare()
    cpu_host.keep_large_blocks()
import jax, jax.numpy as jnp
f = jax.jit(lambda x: jnp.sin(x) * 2.0)
x = jnp.ones((24 * 2**20,), jnp.float32)  # 96 MB in, 96 MB out: more than glibc's mmap threshold
faults = []
for _ in range(11):
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    y = f(x)
    y.block_until_ready()
    del y
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
print(sorted(faults)[5])  # the median call (the heap grows now and then, when an output is freed late)
"""


@pytest.mark.skipif(cpu_host._libc() is None, reason="glibc's mallopt")
def test_the_calling_thread_reuses_a_freed_96_mb_buffer_instead_of_faulting_it_in_again():
    """JAX's worker thread maps each call's 96 MB output afresh (~24,600 page faults a call); run
    on the calling thread with the heap kept (`cpu_host.prepare`, `keep_large_blocks`), the next
    call reuses it (the median call of 11)."""
    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    faults = {}
    for mode in ("calling-thread", "jax-default"):
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr
        faults[mode] = float(out.stdout.split()[-1])
    assert faults["jax-default"] > 10_000, faults  # 96 MB / 4 KiB pages: the measurement sees them
    assert faults["calling-thread"] < 1_000, faults


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the default parts need >= 2 cores")
def test_training_in_two_parts_on_one_device_matches_two_devices(tmp_path, jax_cache):  # noqa: F811
    """The default run (one CPU device, its batch of 2 in 2 parts, on the calling thread) and
    --cpu-devices 2 (one example per device, the gradient all-reduced) reach the same parameters
    to float32 round-off (the preset has no dropout: the same draws)."""
    steps = ["--data-parallel", "-1", "--steps", "3", "--checkpoint-every", "1000"]
    _run(jax_cache, *steps, "--run-dir", str(tmp_path / "parts"))
    _run(jax_cache, *steps, "--cpu-devices", "2", "--run-dir", str(tmp_path / "split"))
    devices = [json.loads((tmp_path / r / "summary.json").read_text())["devices"] for r in ("parts", "split")]
    assert [(d["mesh"], d["batch_parts"]) for d in devices] == [({"data": 1, "fsdp": 1}, 2),
                                                               ({"data": 2, "fsdp": 1}, 1)]
    got, _ = _final_params(tmp_path / "parts")
    want, _ = _final_params(tmp_path / "split")
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-5, err_msg=k)


def test_a_one_device_cpu_step_on_the_calling_thread_keeps_large_blocks(monkeypatch):
    """make_step asks glibc to keep the step's buffers exactly when the step runs on the calling
    thread's heap: one CPU device, synchronous dispatch (not for several devices, nor on JAX's
    default asynchronous dispatch)."""
    from test_train_step import CONFIG
    from vdm_fast import train as fast_train
    from vdm_ref.network import init
    from vdm_ref.train import Recipe

    calls = []
    monkeypatch.setattr(cpu_host, "keep_large_blocks", lambda: calls.append(1) or True)
    params = init(CONFIG.unet, 0)
    for inline, devices, want in [(True, 1, 1), (True, 2, 0), (False, 1, 0)]:
        monkeypatch.setattr(cpu_host, "on_calling_thread", lambda inline=inline: inline)
        calls.clear()
        fast_train.make_step(CONFIG, Recipe(), params=params, mesh=shd.data_fsdp_mesh(devices, 1))
        assert len(calls) == want, (inline, devices)
