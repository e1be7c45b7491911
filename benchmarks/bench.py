"""Speed of the fast backend, measured (issue 4): network evaluation, sampler, compile time,
achieved FLOP/s against a matmul peak measured in the same run, peak memory, fast/ref speedup.

    python -m benchmarks.bench                          # mnist-small and bair at batch 1
    python -m benchmarks.bench --presets tiny --repeats 3 --no-reference
    python cli.py bench ...                             # the CLI calls `main` below

Per preset (each in a fresh process, so its peak memory is its own):

- network: the Equinox U-Net (`vdm_fast.network.from_params`, float32, `jax.jit`), batch B, at
  the preset's frames and resolution, cond = None. Compile time = trace + lower + XLA compile.
  Timings are medians over `repeats` runs after a warm-up, each ended by `block_until_ready`.
- FLOP/s: `vdm_fast.network.flops(config)` × B / time. The peak is a float32 `jnp.dot` of two
  N×N matrices (2N³ FLOPs) timed *interleaved* with the network runs (matmul, network, matmul,
  network, ...), and the fraction is the median of the per-pair ratios, so that a machine shared
  with other work slows both alike.
- sampler: `vdm_fast.samplers.sample_ancestral` (and `sample_pc` when an evaluation is under 5 s)
  with a `jax.random` key, on x̂ = x_from_prediction(network): time per step, and the overhead
  over the network evaluations it makes: t_sampler / (evaluations × t_network) − 1, median of
  per-repeat ratios (each sampler run is paired with a network run timed next to it). Its
  compile time is the first call minus a steady-state call.
- memory: peak resident set of the process (`getrusage` max RSS) on CPU, or the device's
  `peak_bytes_in_use` on a GPU, after the fast runs and before the reference's; plus XLA's
  temporary buffer size of the compiled network.
- reference: `vdm_ref.network.apply` in NumPy float64 (the reference as a student runs it) for
  the network, and `vdm_ref.samplers.sample_ancestral` on it for the sampler (2 steps); only for
  presets of at most `reference_max_gflop` GFLOPs per evaluation (a bigger one takes minutes per
  evaluation in NumPy; raise the limit to time one evaluation of it, without the sampler).
- profile: for short evaluations (< 5 s), each U-Net block compiled and timed alone on its real
  input, summed by kind (residual, spatial/temporal attention, down/up, ...), with its FLOPs.
- CPU time: next to wall-clock, every paired figure is also given in process CPU time, which
  does not count the time this process waited while other work held the cores.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import equinox as eqx

from vdm_fast.backend import Denoiser

DEFAULT_PRESETS = ("mnist-small", "bair")


class FreeDenoiser(eqx.Module):
    """x̂ = c z: a denoiser of (almost) no cost, to time a sampler's own work."""

    c: object

    def __call__(self, z, logsnr):
        return self.c * z


def _sampler_program(denoiser, z, grid, pc):
    """The sampler loop compiled ahead of time; returns (run, compile seconds)."""
    import jax
    import jax.numpy as jnp

    from vdm_fast import samplers as fast_samplers

    args = (denoiser, z, grid, jax.random.key(2), jax.random.key(3) if pc else None,
            jnp.asarray(0.1, jnp.float32), jnp.asarray(fast_samplers.LANGEVIN_DELTA, jnp.float32), None, None,
            None, 1)
    t0 = time.perf_counter()
    compiled = fast_samplers._compiled_loop.lower(*args).compile()
    return (lambda: compiled(*args)), time.perf_counter() - t0


# --- one preset, in its own process -----------------------------------------------------------------


def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def _timed(fn):
    """Wall-clock seconds of fn(), ended by block_until_ready."""
    return _timed2(fn)[0]


def _timed2(fn):
    """(wall-clock, process CPU) seconds of fn(), ended by block_until_ready. CPU time counts the
    work this process did (all its threads), not the time it waited for a busy machine."""
    import jax

    wall, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn())
    return time.perf_counter() - wall, time.process_time() - cpu


def _peak_memory_mb():
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2**20, "device peak_bytes_in_use"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process max RSS"


def bench_preset(preset: str, *, batch: int = 1, repeats: int = 5, sampler_steps: int | None = None,
                 reference: bool = True, reference_max_gflop: float = 50.0, matmul_size: int = 2048,
                 log: Callable[[str], None] = print) -> dict:
    """Measure one preset in this process; returns a dict of figures (seconds, GFLOP/s, MB)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from vdm_fast import network as fast_net
    from vdm_fast.schedule import logsnr_grid
    from vdm_ref.configs import get_preset

    cfg = get_preset(preset).unet
    shape = (batch, cfg.frames, cfg.image_size, cfg.image_size, cfg.in_channels)
    flops = fast_net.flops(cfg) * batch
    out = {"preset": preset, "batch": batch, "video": list(shape[1:]), "params": fast_net.count_params(cfg),
               "gflop_per_eval": flops / 1e9, "device": str(jax.devices()[0])}
    log(f"[{preset}] {out['params']:,} parameters, {flops / 1e9:.2f} GFLOP per evaluation at batch {batch}")

    model = fast_net.from_params(cfg, fast_net.init(cfg, 0))
    arrays, static = eqx.partition(model, eqx.is_array)
    z = jax.random.normal(jax.random.key(0), shape, jnp.float32)
    logsnr = jnp.full((batch,), 0.5, jnp.float32)

    # Network: compile (trace + lower + XLA), then interleaved with the matmul peak.
    network = jax.jit(lambda p, z_, l: eqx.combine(p, static)(z_, l))
    t0 = time.perf_counter()
    compiled = network.lower(arrays, z, logsnr).compile()
    out["compile_network_s"] = time.perf_counter() - t0
    memory = compiled.memory_analysis()
    out["xla_temp_mb"] = None if memory is None else memory.temp_size_in_bytes / 2**20
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    out["xla_gflop_per_eval"] = cost.get("flops", float("nan")) / 1e9 if cost else None
    n = matmul_size
    a = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    matmul = jax.jit(jnp.dot).lower(a, a).compile()
    run_net = lambda: compiled(arrays, z, logsnr)
    run_mm = lambda: matmul(a, a)
    first = _timed(run_net)
    _timed(run_mm)
    reps = max(2, min(repeats, int(90 / max(first, 1e-3))))
    mm_net = [(_timed2(run_mm), _timed2(run_net)) for _ in range(reps)]
    t_mm, t_net = [m[0] for m, _ in mm_net], [t[0] for _, t in mm_net]
    out["network_s"] = _median(t_net)
    out["network_cpu_s"] = _median([t[1] for _, t in mm_net])
    out["network_gflops"] = flops / out["network_s"] / 1e9
    out["matmul_gflops"] = 2 * n**3 / _median(t_mm) / 1e9
    out["fraction_of_matmul_peak"] = _median([(flops / tn) / (2 * n**3 / tm) for tn, tm in zip(t_net, t_mm)])
    out["fraction_of_matmul_peak_cpu"] = _median([(flops / t[1]) / (2 * n**3 / m[1]) for m, t in mm_net])
    out["network_runs"] = reps
    log(f"[{preset}] network {out['network_s'] * 1e3:.1f} ms ({out['network_gflops']:.1f} GFLOP/s), "
        f"matmul peak {out['matmul_gflops']:.1f} GFLOP/s, fraction {out['fraction_of_matmul_peak']:.0%} "
        f"(CPU time: {out['fraction_of_matmul_peak_cpu']:.0%}), "
        f"compile {out['compile_network_s']:.1f} s")

    # Sampler: the whole loop compiled ahead of time (its compile time), key-drawn noise, x̂ from
    # the network's prediction. Its own work (maths, draws, loop) is measured by the same compiled
    # loop around a free denoiser (x̂ = 0.9 z); with the network it is timed directly, paired with
    # a network run, when an evaluation is short enough to repeat (< 5 s), else run once.
    denoiser = Denoiser(model, cfg.target)
    steps = sampler_steps or int(np.clip(round(3.0 / out["network_s"]), 2, 32))
    grid = logsnr_grid(steps)
    out["sampler_steps"] = steps
    short = out["network_s"] < 5.0
    for kind, pc, evals in (("ancestral", False, steps), ("pc", True, 2 * (steps - 1) + 1)):
        out[f"{kind}_evals"] = evals
        run_free, _ = _sampler_program(FreeDenoiser(jnp.asarray(0.9, jnp.float32)), z, grid, pc)
        _timed(run_free)
        t_free = _median([_timed(run_free) for _ in range(max(5, repeats))])
        out[f"{kind}_own_s"] = t_free
        out[f"{kind}_own_fraction"] = t_free / (evals * out["network_s"])
        if kind == "pc" and not short:
            log(f"[{preset}] {kind} sampler's own work {t_free * 1e3:.1f} ms for {evals} evaluations "
                f"({out[f'{kind}_own_fraction']:.3%} of their network time); not run with the network")
            continue
        run, out[f"{kind}_compile_s"] = _sampler_program(denoiser, z, grid, pc)
        if short:
            _timed(run)
            pairs = [(_timed2(run), _timed2(run_net))
                     for _ in range(max(3, min(2 * repeats, int(150 / (evals * out["network_s"])))))]
            out[f"{kind}_overhead"] = _median([ts[0] / (evals * tn[0]) - 1 for ts, tn in pairs])
            out[f"{kind}_overhead_cpu"] = _median([ts[1] / (evals * tn[1]) - 1 for ts, tn in pairs])
            t_run = _median([p[0][0] for p in pairs])
            out[f"{kind}_per_step_cpu_s"] = _median([p[0][1] for p in pairs]) / steps
        else:
            t_run = _timed(run)
            out[f"{kind}_overhead"] = out[f"{kind}_overhead_cpu"] = None
        out[f"{kind}_s"] = t_run
        out[f"{kind}_per_step_s"] = t_run / steps
        direct = "" if out[f"{kind}_overhead"] is None else (
            f"overhead paired {out[f'{kind}_overhead']:+.1%} wall / {out[f'{kind}_overhead_cpu']:+.1%} CPU, ")
        log(f"[{preset}] {kind} sampler, {steps} steps ({evals} network evaluations): {t_run:.3f} s, "
            f"{t_run / steps * 1e3:.1f} ms/step, {direct}own work {t_free * 1e3:.1f} ms "
            f"({out[f'{kind}_own_fraction']:.3%} of the evaluations), compile {out[f'{kind}_compile_s']:.1f} s")

    # Where the time goes: each block compiled and timed alone (when an evaluation is short).
    if short:
        out["profile"] = _profile_blocks(model, cfg, z, logsnr, repeats)
        total = sum(row["s"] for row in out["profile"].values())
        log(f"[{preset}] blocks timed alone: " + ", ".join(
            f"{kind} {row['s'] / total:.0%} of time / {row['gflop'] / (flops / 1e9):.0%} of FLOPs "
            f"({row['gflop'] / row['s']:.0f} GFLOP/s)" for kind, row in out["profile"].items()))

    out["peak_memory_mb"], out["peak_memory_kind"] = _peak_memory_mb()  # the fast backend's alone

    # Reference (NumPy float64).
    if reference and flops / 1e9 <= reference_max_gflop:
        out.update(_bench_reference(preset, cfg, model, np.asarray(z, np.float64), out, log))
    else:
        out["reference"] = (f"not run: {flops / 1e9:.0f} GFLOP per evaluation > reference_max_gflop="
                            f"{reference_max_gflop:g}" if reference else "not run (reference=False)")
    log(f"[{preset}] peak memory of the fast runs {out['peak_memory_mb']:.0f} MB ({out['peak_memory_kind']})"
        + (f"; with the reference {_peak_memory_mb()[0]:.0f} MB" if "ref_network_s" in out else ""))
    return out


def _block_gflop(cfg, blk, batch):
    """FLOPs of one block, by the counting rule of `vdm_ref.network.flops` (GFLOP)."""
    t, r, e = cfg.frames, cfg.image_size // 2**blk.level, cfg.emb_dim
    px, cin, cout = r * r, blk.in_channels, blk.out_channels
    conv = lambda pixels, a, b: 2 * t * pixels * 9 * a * b
    if blk.kind == "res":
        n = conv(px, cin, cout) + conv(px, cout, cout) + 2 * e * cout + (2 * t * px * cin * cout if cin != cout else 0)
    elif blk.kind == "spatial_attn":
        n = 2 * t * px * 4 * cin * cin + 4 * t * px * px * cin
    elif blk.kind == "temporal_attn":
        n = 2 * t * px * 4 * cin * cin + 4 * px * t * t * cin
    elif blk.kind == "down":
        n = conv(px // 4, cin, cout)
    else:
        n = conv(px * 4, cin, cout)
    return batch * n / 1e9


def _profile_blocks(model, cfg, z, logsnr, repeats):
    """Time each block of the U-Net alone (jitted, on its real input), summed by kind."""
    import jax
    import jax.numpy as jnp

    from vdm_fast.network import BlockContext

    def call(block, h, emb):
        return block(h, BlockContext(emb), key=None)

    rows = {}

    def timed_block(kind, fn, args, gflop):
        fn = eqx.filter_jit(fn)
        result = jax.block_until_ready(fn(*args))
        t = _median([_timed(lambda: fn(*args)) for _ in range(max(3, repeats))])
        row = rows.setdefault(kind, {"s": 0.0, "gflop": 0.0})
        row["s"] += t
        row["gflop"] += gflop
        return result

    batch = z.shape[0]
    e = cfg.emb_dim
    emb = timed_block("embedding", lambda m, l: m.emb(l, None), (model, logsnr),
                      batch * 2 * (cfg.channels * e + (cfg.emb_mlp_layers - 1) * e * e) / 1e9)
    conv_gflop = lambda cin, cout: batch * 2 * cfg.frames * cfg.image_size**2 * 9 * cin * cout / 1e9
    h = timed_block("conv in/out", lambda c, x: c(x), (model.conv_in, z), conv_gflop(cfg.in_channels, cfg.channels))
    skips = [h]
    for spec, block in zip(model.specs, model.blocks):
        if spec.concat_skip:
            h = jnp.concatenate([h, skips.pop()], axis=-1)
        h = timed_block(spec.kind, call, (block, h, emb), _block_gflop(cfg, spec, batch))
        if spec.save_skip:
            skips.append(h)
    timed_block("conv in/out", lambda m, x: m.out_conv(jax.nn.silu(m.out_norm(x))), (model, h),
                conv_gflop(cfg.channels, cfg.out_channels))
    return rows


def _bench_reference(preset, cfg, model, z, fast, log):
    import jax
    import numpy as np

    from vdm_fast import network as fast_net
    from vdm_ref import network as ref_net
    from vdm_ref import parameterization as ref_param
    from vdm_ref import samplers as ref_samplers
    from vdm_ref import schedule as ref_schedule

    params = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), fast_net.to_params(model))
    logsnr = np.full((z.shape[0],), 0.5)

    def denoise(z_, l):
        return ref_param.x_from_prediction(z_, ref_net.apply(params, cfg, z_, l), l, cfg.target)

    small = fast["network_s"] < 5.0  # else one evaluation (minutes in NumPy) and no sampler run
    t_net = [_timed2(lambda: ref_net.apply(params, cfg, z, logsnr)) for _ in range(2 if small else 1)]
    out = {"ref_network_s": _median([t[0] for t in t_net]), "ref_network_cpu_s": _median([t[1] for t in t_net])}
    out["speedup_network"] = out["ref_network_s"] / fast["network_s"]
    out["speedup_network_cpu"] = out["ref_network_cpu_s"] / fast["network_cpu_s"]
    msg = (f"[{preset}] reference network {out['ref_network_s']:.2f} s (fast ×{out['speedup_network']:.1f} wall, "
           f"×{out['speedup_network_cpu']:.1f} CPU time)")
    if small:
        steps = 2
        noise = np.random.default_rng(0).standard_normal((steps - 1,) + z.shape)
        wall, cpu = _timed2(lambda: ref_samplers.sample_ancestral(denoise, z, ref_schedule.logsnr_grid(steps), noise,
                                                                   gamma=0.1))
        out["ref_sampler_per_step_s"], out["ref_sampler_per_step_cpu_s"] = wall / steps, cpu / steps
        out["speedup_sampler"] = out["ref_sampler_per_step_s"] / fast["ancestral_per_step_s"]
        out["speedup_sampler_cpu"] = out["ref_sampler_per_step_cpu_s"] / fast["ancestral_per_step_cpu_s"]
        msg += (f", sampler {out['ref_sampler_per_step_s']:.2f} s/step (fast ×{out['speedup_sampler']:.1f} wall, "
                f"×{out['speedup_sampler_cpu']:.1f} CPU time)")
    log(msg)
    return out


def _child(preset, kwargs):
    """Entry point of the per-preset process: its log lines go straight to stdout."""
    return bench_preset(preset, log=lambda s: print(s, flush=True), **kwargs)


# --- the machine and the report ---------------------------------------------------------------------


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


def report(results: Sequence[dict], info: dict) -> str:
    """The figures as Markdown (the tables of docs/benchmarks.md)."""
    lines = [f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GiB; {info['device']}; "
             f"JAX {info['jax']}, Python {info['python']}; {info['date']}; load average at start "
             f"{info['load_average']}" + (f", at end {info['load_average_end']}" if "load_average_end" in info else ""),
             "",
             ("| preset (batch) | GFLOP/eval | network eval | achieved | matmul peak | fraction of peak "
             "(wall / CPU time) | compile (network) | peak memory | XLA temp |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| {r['preset']} ({r['batch']}) | {r['gflop_per_eval']:.2f} | {r['network_s'] * 1e3:,.1f} ms | "
            f"{r['network_gflops']:.1f} GFLOP/s | {r['matmul_gflops']:.1f} GFLOP/s | "
            f"{r['fraction_of_matmul_peak']:.0%} / {r['fraction_of_matmul_peak_cpu']:.0%} | "
            f"{r['compile_network_s']:.1f} s | "
            f"{r['peak_memory_mb']:,.0f} MB | {_fmt(r.get('xla_temp_mb'), ',.0f')} MB |")
    lines += ["", ("| preset | sampler | steps (network evals) | time | per step | overhead, paired (wall / CPU) | "
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
    profiled = [r for r in results if "profile" in r]
    if profiled:
        lines += ["", "| preset | block kind | time (alone) | share of time | share of FLOPs | GFLOP/s |",
                  "|---|---|---:|---:|---:|---:|"]
        for r in profiled:
            total_s = sum(row["s"] for row in r["profile"].values())
            total_g = sum(row["gflop"] for row in r["profile"].values())
            for kind, row in sorted(r["profile"].items(), key=lambda kv: -kv[1]["s"]):
                lines.append(f"| {r['preset']} | {kind} | {row['s'] * 1e3:,.1f} ms | {row['s'] / total_s:.0%} | "
                             f"{row['gflop'] / total_g:.0%} | {row['gflop'] / row['s']:.1f} |")
            lines.append(f"| {r['preset']} | sum of blocks alone / whole network | {total_s * 1e3:,.1f} ms / "
                         f"{r['network_s'] * 1e3:,.1f} ms | | | |")
    lines += ["", ("| preset | reference network (NumPy f64) | fast network | speedup (wall / CPU) | "
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
    return "\n".join(lines)


def main(presets: Sequence[str] = DEFAULT_PRESETS, *, batch: int = 1, repeats: int = 5,
         sampler_steps: int | None = None, reference: bool = True, reference_max_gflop: float = 50.0,
         matmul_size: int = 2048, json_path: str | None = None, isolate: bool = True,
         log: Callable[[str], None] = print) -> list[dict]:
    """Run the benchmark for each preset, print the Markdown report, return the figures.

    **Arguments:**
    - presets: names from `vdm_ref.configs.PRESETS` (default: the small `mnist-small` and the
      Appendix A `bair`).
    - batch: videos per network evaluation; repeats: timed runs per figure (fewer when one run
      is long: at most ~90-120 s of timing per figure, never fewer than 2).
    - sampler_steps: steps of the sampler runs (default: about 3 s of network time, 2..32).
    - reference: also time vdm_ref (NumPy float64), for presets of ≤ reference_max_gflop GFLOPs
      per evaluation.
    - matmul_size: N of the N×N float32 matmul that measures the peak.
    - json_path: also write {machine, results} there as JSON.
    - isolate: each preset in a fresh process (its own peak memory); False runs in this one.

    **Returns:** one dict of figures per preset (keys as in the JSON).
    """
    from vdm_ref.configs import PRESETS

    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise ValueError(f"unknown presets {unknown}: expected names from {sorted(PRESETS)}")
    if batch < 1 or repeats < 1 or matmul_size < 64:
        raise ValueError(f"batch and repeats must be ≥ 1 and matmul_size ≥ 64, got {batch}, {repeats}, {matmul_size}")
    info = machine()
    log(f"vdm benchmark on {info['cpu']} ({info['cores']} cores), {info['device']}, load {info['load_average']}")
    kwargs = {"batch": batch, "repeats": repeats, "sampler_steps": sampler_steps, "reference": reference,
                  "reference_max_gflop": reference_max_gflop, "matmul_size": matmul_size}
    results = []
    for preset in presets:
        if isolate:
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                results.append(pool.submit(_child, preset, kwargs).result())
        else:
            results.append(bench_preset(preset, log=log, **kwargs))
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    log("")
    log(report(results, info))
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump({"machine": info, "results": results}, f, indent=2)
    return results


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=list(DEFAULT_PRESETS))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sampler-steps", type=int, default=None)
    p.add_argument("--no-reference", dest="reference", action="store_false")
    p.add_argument("--reference-max-gflop", type=float, default=50.0)
    p.add_argument("--matmul-size", type=int, default=2048)
    p.add_argument("--json", dest="json_path", default=None)
    p.add_argument("--no-isolate", dest="isolate", action="store_false")
    return p.parse_args(argv)


if __name__ == "__main__":
    args = vars(_parse(sys.argv[1:]))
    main(args.pop("presets"), **args)
