"""benchmarks.bench on the `tiny` preset, in this process: every figure present, positive and
consistent with the others (FLOP/s = FLOPs / time, per step = time / steps, ...).

One bench run (module fixture, 1 repeat, 2 sampler steps, a 64x64 matmul) feeds every test: it
compiles the tiny U-Net, both samplers around it and each block alone (about 55 s of CPU time on
2 cores); the assertions themselves are instant.
"""

import json
import re

import pytest

from benchmarks import bench
from vdm_ref.configs import get_preset
from vdm_ref.network import flops

STEPS = 2
# Ratios recomputed from the stored figures: only float rounding separates them.
RTOL = 1e-9


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    lines = []
    results = bench.main(presets=("tiny",), batch=1, repeats=1, reference=True, reference_max_gflop=50.0,
                         json_path=str(path), sampler_steps=STEPS, matmul_size=64, isolate=False,
                         log=lines.append)
    return results, json.loads(path.read_text(encoding="utf-8")), lines


def test_network_figures_are_positive_and_flops_over_time(run):
    (r,), _, _ = run
    assert r["preset"] == "tiny" and r["batch"] == 1
    assert r["gflop_per_eval"] * 1e9 == flops(get_preset("tiny").unet, batch=1)
    for key in ("network_s", "network_cpu_s", "compile_network_s", "matmul_gflops", "matmul_best_gflops",
                "fraction_of_matmul_peak", "fraction_of_matmul_peak_cpu", "peak_memory_mb",
                "xla_gflop_per_eval"):
        assert r[key] > 0, key
    assert r["network_gflops"] == pytest.approx(r["gflop_per_eval"] / r["network_s"], rel=RTOL)
    # XLA skips the zero padding of the 3x3 taps that vdm_ref.network.flops counts (about 9% at 8x8)
    assert 0.8 < r["xla_gflop_per_eval"] / r["gflop_per_eval"] <= 1.0


def test_sampler_figures_are_consistent(run):
    (r,), _, _ = run
    assert r["sampler_steps"] == STEPS
    assert r["ancestral_evals"] == STEPS and r["pc_evals"] == 2 * (STEPS - 1) + 1
    for kind in ("ancestral", "pc"):
        assert r[f"{kind}_s"] > 0 and r[f"{kind}_own_s"] > 0 and r[f"{kind}_compile_s"] >= 0
        assert r[f"{kind}_per_step_s"] == pytest.approx(r[f"{kind}_s"] / STEPS, rel=RTOL)
        assert r[f"{kind}_own_fraction"] == pytest.approx(
            r[f"{kind}_own_s"] / (r[f"{kind}_evals"] * r["network_s"]), rel=RTOL)
        assert r[f"{kind}_overhead"] > -1 and r[f"{kind}_overhead_cpu"] > -1  # times are positive


def test_block_profile_covers_every_kind_and_sums_to_the_network(run):
    (r,), _, _ = run
    profile = r["profile"]
    assert set(profile) == {"embedding", "conv in/out", "res", "spatial_attn", "temporal_attn", "down", "up"}
    assert all(row["s"] > 0 and row["gflop"] > 0 for row in profile.values())
    # each block's FLOPs are XLA's count of its own program: together XLA's count for the whole
    # network, up to elementwise work fused differently across block boundaries (< 5 %)
    total = sum(row["gflop"] for row in profile.values())
    assert total == pytest.approx(r["xla_gflop_per_eval"], rel=0.05)


def test_reference_speedups_are_time_ratios(run):
    (r,), _, _ = run
    assert r["ref_network_s"] > 0 and r["ref_sampler_per_step_s"] > 0
    assert r["speedup_network"] == pytest.approx(r["ref_network_s"] / r["network_s"], rel=RTOL)
    assert r["speedup_sampler"] == pytest.approx(r["ref_sampler_per_step_s"] / r["ancestral_per_step_s"], rel=RTOL)


def test_json_and_report_hold_the_run(run):
    results, stored, lines = run
    assert stored["results"] == json.loads(json.dumps(results))
    assert stored["machine"]["cores"] >= 1 and "load_average_end" in stored["machine"]
    table = "\n".join(lines)
    assert "| tiny (1) |" in table and "| tiny | ancestral |" in table and "| tiny | res |" in table


def test_bad_arguments_are_refused_before_any_work():
    with pytest.raises(ValueError, match="unknown presets"):
        bench.main(presets=("no-such-preset",), isolate=False, log=lambda s: None)
    with pytest.raises(ValueError, match="repeats"):
        bench.main(presets=("tiny",), repeats=0, isolate=False, log=lambda s: None)


@pytest.mark.parametrize("flags, message", [
    (["--presets", "nope"], r"unknown presets \['nope'\]"),
    (["--batch", "0"], "batch and repeats must be ≥ 1"),
    (["--repeats", "0"], "batch and repeats must be ≥ 1"),
    (["--json-path", "FILE/x.json"], "--json-path .*FILE/x.json: cannot create it"),
])
def test_bad_bench_flags_are_one_line_before_any_work(tmp_path, monkeypatch, flags, message):
    from tiny_models import one_line_error

    (tmp_path / "FILE").write_text("a file")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench, "main", lambda **kw: pytest.fail("benchmark started despite bad flags"))
    assert re.search(message, one_line_error(["bench", "--presets", "tiny", *flags]))


def test_command_line_flags():
    args = vars(bench._parse(["--presets", "tiny", "--repeats", "2", "--no-reference", "--json", "b.json",
                              "--no-isolate", "--no-profile", "--reference-max-gflop", "7"]))
    assert args == {"presets": ["tiny"], "batch": 1, "repeats": 2, "sampler_steps": None, "reference": False,
                    "reference_max_gflop": 7.0, "matmul_size": 2048, "json_path": "b.json", "isolate": False,
                    "profile": False}


def test_step_profile_groups_a_traced_steps_operations_by_kind():
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-m", "benchmarks.step_profile", "--preset", "tiny", "--steps", "2",
                          "--top", "40"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    head, columns, *rows = out.stdout.strip().splitlines()
    assert re.match(r"tiny: \d+\.\d+ s/step untraced, 1 device\(s\), the batch in 2 part\(s\); "
                    r"operation events \d+ ms per step", head)
    kinds = {row.split()[0]: float(row.split()[1]) for row in rows}
    assert "convolution" in kinds and "all-reduce" not in kinds  # one device (two parts): nothing to all-reduce
    assert all(ms >= 0 for ms in kinds.values()) and not any(k.startswith("ThunkExecutor") for k in kinds)
    assert not any(re.search(r"\.\d+$", k) for k in kinds)  # grouped: no numbered operation names
    bad = subprocess.run([sys.executable, "-m", "benchmarks.step_profile", "--preset", "nope"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert bad.returncode == 2 and "unknown preset 'nope'" in bad.stderr and "Traceback" not in bad.stderr
