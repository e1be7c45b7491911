"""benchmarks.peer, the driver of the peer benchmark, with stand-in peers (no torch needed): the
shapes are those of issue 14, children's JSON, failures and peak memory are read as they happen,
and the per-FLOP ratios are our FLOP/s over the peer's."""

import json
import subprocess
import sys
import textwrap

import pytest

from benchmarks import peer

FAKE_PEER = textwrap.dedent("""
    import argparse, json, os, signal, sys
    p = argparse.ArgumentParser()
    for name in ("--phase", "--batch", "--frames", "--size", "--channels", "--repeats", "--threads"):
        p.add_argument(name)
    p.add_argument("--mults", nargs="+")
    a = p.parse_args()
    mode = os.environ.get("FAKE_PEER_MODE", "ok")
    if a.phase == "train" and mode == "oom":
        raise MemoryError("cannot allocate 46.7 GB")
    if a.phase == "train" and mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    block = bytearray(64 * 2**20)  # 64 MB touched: the parent's wait4 peak must see it
    block[::4096] = b"x" * len(block[::4096])
    print("some log line")
    row = {"model": "VDP", "phase": a.phase, "params": 1000, "batch": int(a.batch),
           "video": [int(a.frames), int(a.size), int(a.size), 3], "torch": "fake"}
    if a.phase == "eval":
        row.update(flops_fwd_per_example=2e9, eval_s=0.5, eval_cpu_s=0.9)
    else:
        row.update(train_step_s=2.0, train_step_cpu_s=3.5)
    print(json.dumps(row))
""")


@pytest.fixture()
def fake_peer(tmp_path):
    path = tmp_path / "fake_peer.py"
    path.write_text(FAKE_PEER)
    return path


def test_shapes_are_those_of_the_issue():
    from vdm_ref.network import count_params, flops

    # issue 14's table: A 4.55M params, 16.5 GFLOP; B 71.6M, 833; C 71.4M, 466 (rounded there)
    for name, params, gflop in (("A", 4.55e6, 16.5), ("B", 71.6e6, 832.6), ("C", 71.45e6, 466.2)):
        cfg = peer.unet_config(peer.SHAPES[name])
        assert count_params(cfg) == pytest.approx(params, rel=2e-3), name
        assert flops(cfg) / 1e9 == pytest.approx(gflop, rel=2e-3), name
    assert peer.unet_config(peer.SHAPES["C"]).attn_resolutions == (32, 16, 8)
    assert peer.unet_config(peer.SHAPES["B"]).attn_resolutions == (64, 32, 16, 8)
    assert peer.train_config(peer.SHAPES["A"]).train.batch_size == 2


def test_driver_reads_a_peer_and_computes_flop_rates(fake_peer, monkeypatch):
    monkeypatch.setenv("FAKE_PEER_MODE", "ok")
    result = peer.run(["A"], peer_python=sys.executable, peer_script=fake_peer, repeats=1,
                      sides=("peer",), log=lambda s: None)
    (row,) = result["rows"]
    assert row["model"] == "VDP" and row["shape"] == "A" and row["batch"] == 2
    assert row["eval_s"] == 0.5 and row["train_step_s"] == 2.0
    assert row["eval_flops_per_s"] == pytest.approx(2e9 * 2 / 0.5)
    assert row["train_flops_per_s"] == pytest.approx(3 * 2e9 * 2 / 2.0)
    # the child touched 64 MB, so wait4 must see at least that much (loosely: a loaded machine may
    # reclaim pages early). No upper bound: a child forked from a large parent (pytest with JAX
    # loaded) reports the parent's pre-exec pages too — why benchmarks/peer.py runs from a light driver.
    assert row["peak_rss_eval_mb"] >= 16 and row["peak_rss_train_mb"] >= 16
    assert result["torch"] == "fake"
    table = peer.markdown(result)
    assert "| A: B=2, 8x32x32x3, 32 ch x (1,2,4), attention at every level | VDP |" in table
    assert "| 0.5 s (0.9 s) | 2 s (3.5 s) |" in table


@pytest.mark.parametrize("mode,message", [("oom", "MemoryError: cannot allocate 46.7 GB"),
                                          ("kill", "killed by SIGKILL (out of memory?)")])
def test_a_failed_phase_is_reported_not_raised(fake_peer, monkeypatch, mode, message):
    monkeypatch.setenv("FAKE_PEER_MODE", mode)
    result = peer.run(["A"], peer_python=sys.executable, peer_script=fake_peer, repeats=1,
                      sides=("peer",), log=lambda s: None)
    (row,) = result["rows"]
    assert row["eval_s"] == 0.5 and row["eval_error"] is None
    assert row["train_error"] == message and row["train_step_s"] is None
    assert f"**failed: {message}**" in peer.markdown(result)


def test_a_child_past_its_timeout_is_killed():
    row = peer.run_child([sys.executable, "-c", "import time; time.sleep(30)"], timeout=1.0)
    assert row["error"] == "timed out after 1 s" and row["wall_s"] < 10


def test_per_flop_ratios_are_ours_over_the_peers_and_c_uses_b():
    rows = [
        {"shape": "A", "model": "VDP", "eval_flops_per_s": 10.0, "train_flops_per_s": 20.0,
         "peak_rss_train_mb": 2000.0},
        {"shape": "A", "model": "vdm_fast", "eval_flops_per_s": 25.0, "train_flops_per_s": 30.0,
         "peak_rss_train_mb": 3000.0},
        {"shape": "B", "model": "VDP", "eval_flops_per_s": 4.0, "train_flops_per_s": 8.0,
         "peak_rss_train_mb": 7000.0},
        {"shape": "B", "model": "vdm_fast", "eval_flops_per_s": 6.0, "train_flops_per_s": None,
         "peak_rss_train_mb": 20000.0, "train_error": "RESOURCE_EXHAUSTED"},
        {"shape": "C", "model": "vdm_fast", "eval_flops_per_s": 12.0, "train_flops_per_s": 4.0,
         "peak_rss_train_mb": 3500.0},
    ]
    got = {q["shape"]: q for q in peer.ratios(rows)}
    assert got["A"] == {"shape": "A", "against": "A", "eval_per_flop": 2.5, "train_per_flop": 1.5,
                        "train_memory": 1.5}
    assert got["B"]["train_per_flop"] is None and got["B"]["train_memory"] is None  # failed step
    assert got["C"]["against"] == "B" and got["C"]["train_per_flop"] == 0.5
    assert got["C"]["train_memory"] == pytest.approx(0.5)


def test_failure_reason_prefers_the_out_of_memory_line():
    stderr = ("Traceback (most recent call last):\n  ...\njaxlib.xla_extension.XlaRuntimeError: "
              "RESOURCE_EXHAUSTED: Out of memory allocating 50143606784 bytes.\nValueError: later\n")
    assert peer.failure_reason(1, stderr).startswith("jaxlib.xla_extension.XlaRuntimeError: RESOURCE_EXHAUSTED")
    assert peer.failure_reason(1, "") == "exit status 1"


def test_torchvision_stub_builds_transforms_and_refuses_to_apply_them():
    code = ("import sys\n"
            "sys.modules['torchvision'] = None  # as if not installed: its import raises ImportError\n"
            "import benchmarks.peer_vdp as m\n"
            "m._stub_torchvision()\n"
            "from torchvision import transforms as T, utils\n"
            "t = T.ToTensor()\n"
            "try:\n    t(0)\nexcept RuntimeError as e:\n    print('refused:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=peer.ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused: torchvision is stubbed")


def test_peer_command_names_every_shape_field():
    cmd = peer.peer_command("py", "peer_vdp.py", peer.SHAPES["B"], "train", 3, 2)
    assert cmd == ["py", "peer_vdp.py", "--phase", "train", "--batch", "1", "--frames", "16", "--size",
                   "64", "--channels", "64", "--mults", "1", "2", "4", "8", "--repeats", "3", "--threads", "2"]
    assert json.loads(json.dumps(peer.ours_command(peer.SHAPES["A"], "eval", 2)))[-6:] == [
        "--shape", "A", "--phase", "eval", "--repeats", "2"]


@pytest.mark.parametrize("path", ["fused", "checkpointed", "plain"])
def test_attention_benchmark_times_each_path(path, capsys):
    from benchmarks import attention

    attention.main(["--shape", "2", "1", "48", "8", "--path", path, "--repeats", "1",
                    "--tile-mib", str(4 * 2 * 16 * 16 / 2**20), "--backward-keys", "16"])
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["path"] == path and row["shape"] == [2, 1, 48, 8]
    assert row["chunks"] == [4, 48] and row["backward_tile"] == [16, 16]  # 2 KiB tiles
    assert row["seconds"]["forward"] > 0 and row["seconds"]["forward+backward"] > 0


def test_remat_reaches_our_training_phase_and_the_table(fake_peer, monkeypatch):
    assert peer.ours_command(peer.SHAPES["A"], "train", 2, remat=True)[-1] == "--remat"
    assert "--remat" not in peer.ours_command(peer.SHAPES["A"], "train", 2)
    seen = []
    monkeypatch.setattr(peer, "run_child", lambda cmd, timeout: seen.append(cmd) or {"error": "skipped"})
    result = peer.run(["T"], peer_python=None, sides=("ours",), repeats=1, remat=True, log=lambda *_: None)
    assert all(cmd[-1] == "--remat" for cmd in seen) and len(seen) == 2
    result["load_average_end"] = result["load_average_start"]
    assert "rematerialises every block" in peer.markdown(result)


def test_an_unwritable_json_path_is_refused_before_measuring(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(peer, "run", lambda *a, **k: pytest.fail("measured despite a bad --json"))
    with pytest.raises(SystemExit):
        peer.main(["--json", str(tmp_path), "--sides", "ours"])
    assert "--json" in capsys.readouterr().err
