"""The report of `benchmarks.bench`: the machine the figures ran on, the Markdown tables of
docs/benchmarks.md, and the JSON file ({machine, results})."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path


def machine() -> dict:
    """CPU model, cores, memory, JAX version and device, load average: what the figures ran on."""
    import jax

    model = platform.processor() or "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gb = float("nan")
    return {"cpu": model, "cores": os.cpu_count(), "memory_gb": round(mem_gb, 1), "jax": jax.__version__,
                "device": str(jax.devices()[0]), "python": platform.python_version(),
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")}


def _fmt(value, spec, scale=1.0):
    return "—" if value is None else format(value * scale, spec)


def _network_table(results) -> list[str]:
    lines = [("| preset (batch) | GFLOP/eval | network eval | achieved | matmul peak (interleaved) | "
              "fraction of peak (wall / CPU time) | compile (network) | peak memory | XLA temp |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| {r['preset']} ({r['batch']}) | {r['gflop_per_eval']:.2f} | {r['network_s'] * 1e3:,.1f} ms | "
            f"{r['network_gflops']:.1f} GFLOP/s | {r['matmul_gflops']:.1f} GFLOP/s | "
            f"{r['fraction_of_matmul_peak']:.0%} / {r['fraction_of_matmul_peak_cpu']:.0%} | "
            f"{r['compile_network_s']:.1f} s | "
            f"{r['peak_memory_mb']:,.0f} MB | {_fmt(r.get('xla_temp_mb'), ',.0f')} MB |")
    return lines


def _sampler_table(results) -> list[str]:
    lines = [("| preset | sampler | steps (network evals) | time | per step | overhead, paired (wall / CPU) | "
              "own work (free denoiser) | own work / network time | compile (sampler) |"),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        for kind in ("ancestral", "pc"):
            if f"{kind}_own_s" not in r:
                continue
            ran = f"{kind}_s" in r
            lines.append(
                f"| {r['preset']} | {kind} | {r['sampler_steps']} ({r[f'{kind}_evals']}) | "
                + (f"{r[f'{kind}_s']:,.3f} s | {r[f'{kind}_per_step_s'] * 1e3:,.1f} ms | " if ran else "not run | | ")
                + (f"{r[f'{kind}_overhead']:+.1%} / {r[f'{kind}_overhead_cpu']:+.1%}"
                   if r.get(f"{kind}_overhead") is not None else "—")
                + f" | {r[f'{kind}_own_s'] * 1e3:,.1f} ms | {r[f'{kind}_own_fraction']:.2%} | "
                + (f"{r[f'{kind}_compile_s']:.1f} s |" if ran else "— |"))
    return lines


def _profile_table(results) -> list[str]:
    lines = [("| preset | block kind | time (alone) | share of time | share of FLOPs (XLA's count) | "
              "GFLOP/s |"),
             "|---|---|---:|---:|---:|---:|"]
    for r in results:
        total_s = sum(row["s"] for row in r["profile"].values())
        total_g = sum(row["gflop"] for row in r["profile"].values()) or float("nan")
        for kind, row in sorted(r["profile"].items(), key=lambda kv: -kv[1]["s"]):
            lines.append(f"| {r['preset']} | {kind} | {row['s'] * 1e3:,.1f} ms | {row['s'] / total_s:.0%} | "
                         f"{row['gflop'] / total_g:.0%} | {row['gflop'] / row['s']:.1f} |")
        lines.append(f"| {r['preset']} | sum of blocks alone / whole network | {total_s * 1e3:,.1f} ms / "
                     f"{r['network_s'] * 1e3:,.1f} ms | | | |")
    return lines


def _reference_table(results) -> list[str]:
    lines = [("| preset | reference network (NumPy f64) | fast network | speedup (wall / CPU) | "
              "reference sampler/step | fast sampler/step | speedup (wall / CPU) |"),
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if "ref_network_s" not in r:
            lines.append(f"| {r['preset']} | {r['reference']} | | | | | |")
            continue
        row = (f"| {r['preset']} | {r['ref_network_s']:,.2f} s | {r['network_s']:,.3f} s | "
               f"×{r['speedup_network']:.1f} / ×{r['speedup_network_cpu']:.1f} | ")
        if "ref_sampler_per_step_s" in r:
            row += (f"{r['ref_sampler_per_step_s']:,.2f} s | {r['ancestral_per_step_s']:,.3f} s | "
                    f"×{r['speedup_sampler']:.1f} / ×{r['speedup_sampler_cpu']:.1f} |")
        else:
            row += "not run | | |"
        lines.append(row)
    return lines


def report(results: Sequence[dict], info: dict) -> str:
    """The figures as Markdown (the tables of docs/benchmarks.md): network, samplers, the
    per-block profile (presets that have one) and the reference."""
    lines = [f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GiB; {info['device']}; "
             f"JAX {info['jax']}, Python {info['python']}; {info['date']}; load average at start "
             f"{info['load_average']}" + (f", at end {info['load_average_end']}" if "load_average_end" in info else ""),
             ""]
    lines += _network_table(results) + [""] + _sampler_table(results)
    profiled = [r for r in results if "profile" in r]
    if profiled:
        lines += [""] + _profile_table(profiled)
    lines += [""] + _reference_table(results)
    return "\n".join(lines)


def write_json(path: str, info: dict, results: Sequence[dict]) -> None:
    """Write {"machine": info, "results": results} to `path` as indented JSON."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"machine": info, "results": list(results)}, f, indent=2)
