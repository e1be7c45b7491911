"""Speed of the fast backend, measured (issue 4): network evaluation, sampler, compile time,
achieved FLOP/s against a matmul peak measured in the same run, peak memory, fast/ref speedup.

    python -m benchmarks.bench                          # mnist-small and bair at batch 1
    python -m benchmarks.bench --presets tiny --repeats 3 --no-reference
    python cli.py bench ...                             # the CLI calls `main` below

Per preset (each in a fresh process, so its peak memory is its own), `bench_preset` composes:

- network (`measure.measure_network`): the Equinox U-Net (`vdm_fast.network.from_params`,
  float32, `jax.jit`), batch B, at the preset's frames and resolution, cond = None. Compile
  time = trace + lower + XLA compile. Timings are medians over `repeats` runs after a warm-up.
- FLOP/s: `vdm_ref.network.flops(config, batch=B)` / time. The peak is a float32 `jnp.dot` of
  two N×N matrices (2N³ FLOPs) timed *interleaved* with the network runs (matmul, network,
  matmul, network, ...: `measure.interleaved_matmul_peak`), and the fraction is the median of
  the per-pair ratios, so that a machine shared with other work slows both alike. The best of
  consecutive matmuls (`vdm_fast.measure.matmul_peak_flops`, the training log's peak) is
  recorded too, as `matmul_best_gflops`.
- sampler (`measure.measure_samplers`): `vdm_fast.samplers.sample_ancestral` (and `sample_pc`
  when an evaluation is under 5 s) with a `jax.random` key, on `vdm_fast.backend.Denoiser`:
  time per step, and the overhead over the network evaluations it makes:
  t_sampler / (evaluations × t_network) − 1, median of per-repeat ratios (each sampler run is
  paired with a network run timed next to it). Its compile time is the first call minus a
  steady-state call; its own work is the same sampler around a free denoiser (x̂ = 0.9 z).
- memory: peak resident set of the process (`getrusage` max RSS) on CPU, or the device's
  `peak_bytes_in_use` on a GPU, after the fast runs and before the reference's; plus XLA's
  temporary buffer size of the compiled network.
- reference (`measure.measure_reference`): `vdm_ref.network.apply` in NumPy float64 (the
  reference as a student runs it) for the network, and `vdm_ref.samplers.sample_ancestral` on it
  for the sampler (2 steps); only for presets of at most `reference_max_gflop` GFLOPs per
  evaluation (a bigger one takes minutes per evaluation in NumPy; raise the limit to time one
  evaluation of it, without the sampler).
- profile (`block_profile.profile_blocks`): for short evaluations (< 5 s), each U-Net block
  compiled and timed alone on its real input, summed by kind, with XLA's count of its FLOPs.
- CPU time: next to wall-clock, every paired figure is also given in process CPU time, which
  does not count the time this process waited while other work held the cores.

The tables and the JSON are `report`'s.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence

from .block_profile import profile_blocks
from .measure import measure_network, measure_reference, measure_samplers, peak_memory_mb
from .report import machine, report, write_json

DEFAULT_PRESETS = ("mnist-small", "bair")


def bench_preset(preset: str, *, batch: int = 1, repeats: int = 5, sampler_steps: int | None = None,
                 reference: bool = True, reference_max_gflop: float = 50.0, matmul_size: int = 2048,
                 profile: bool = True, log: Callable[[str], None] = print) -> dict:
    """Measure one preset in this process (module docstring); returns a dict of figures (seconds,
    GFLOP/s, MB). profile=False skips the per-block profile."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from vdm_fast.backend import Denoiser
    from vdm_fast.network import from_params, to_params
    from vdm_ref.configs import get_preset
    from vdm_ref.network import count_params, flops, init

    def say(message):
        log(f"[{preset}] {message}")

    cfg = get_preset(preset).unet
    shape = (batch, cfg.frames, cfg.image_size, cfg.image_size, cfg.in_channels)
    n_flops = flops(cfg, batch=batch)
    out = {"preset": preset, "batch": batch, "video": list(shape[1:]), "params": count_params(cfg),
           "gflop_per_eval": n_flops / 1e9, "device": str(jax.devices()[0])}
    say(f"{out['params']:,} parameters, {n_flops / 1e9:.2f} GFLOP per evaluation at batch {batch}")

    model = from_params(cfg, init(cfg, 0))
    z = jax.random.normal(jax.random.key(0), shape, jnp.float32)
    logsnr = jnp.full((batch,), 0.5, jnp.float32)
    figures, run_network = measure_network(model, z, logsnr, n_flops, repeats=repeats,
                                           matmul_size=matmul_size)
    out.update(figures)
    say(f"network {out['network_s'] * 1e3:.1f} ms ({out['network_gflops']:.1f} GFLOP/s), "
        f"matmul peak {out['matmul_gflops']:.1f} GFLOP/s, fraction {out['fraction_of_matmul_peak']:.0%} "
        f"(CPU time: {out['fraction_of_matmul_peak_cpu']:.0%}), compile {out['compile_network_s']:.1f} s")

    steps = sampler_steps or int(np.clip(round(3.0 / out["network_s"]), 2, 32))
    out.update(measure_samplers(Denoiser(model, cfg.target), z, out["network_s"], run_network,
                                steps=steps, repeats=repeats, log=say))

    if profile and out["network_s"] < 5.0:
        out["profile"] = profile_blocks(model, z, logsnr, repeats)
        total_s = sum(row["s"] for row in out["profile"].values())
        total_g = sum(row["gflop"] for row in out["profile"].values()) or float("nan")
        say("blocks timed alone: " + ", ".join(
            f"{kind} {row['s'] / total_s:.0%} of time / {row['gflop'] / total_g:.0%} of FLOPs "
            f"({row['gflop'] / row['s']:.0f} GFLOP/s)" for kind, row in out["profile"].items()))

    out["peak_memory_mb"], out["peak_memory_kind"] = peak_memory_mb()  # the fast backend's alone

    if reference and n_flops / 1e9 <= reference_max_gflop:
        params = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), to_params(model))
        out.update(measure_reference(cfg, params, np.asarray(z, np.float64), out, say))
    else:
        out["reference"] = (f"not run: {n_flops / 1e9:.0f} GFLOP per evaluation > reference_max_gflop="
                            f"{reference_max_gflop:g}" if reference else "not run (reference=False)")
    say(f"peak memory of the fast runs {out['peak_memory_mb']:.0f} MB ({out['peak_memory_kind']})"
        + (f"; with the reference {peak_memory_mb()[0]:.0f} MB" if "ref_network_s" in out else ""))
    return out


def _child(preset, kwargs):
    """Entry point of the per-preset process: its log lines go straight to stdout."""
    return bench_preset(preset, log=lambda s: print(s, flush=True), **kwargs)


def check_arguments(presets: Sequence[str], batch: int, repeats: int, matmul_size: int = 2048) -> None:
    """ValueError naming the first bad argument of `main`, before any work."""
    from vdm_ref.configs import PRESETS

    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise ValueError(f"unknown presets {unknown}: expected names from {sorted(PRESETS)}")
    if batch < 1 or repeats < 1 or matmul_size < 64:
        raise ValueError(f"batch and repeats must be ≥ 1 and matmul_size ≥ 64, got {batch}, {repeats}, {matmul_size}")


def main(presets: Sequence[str] = DEFAULT_PRESETS, *, batch: int = 1, repeats: int = 5,
         sampler_steps: int | None = None, reference: bool = True, reference_max_gflop: float = 50.0,
         matmul_size: int = 2048, json_path: str | None = None, isolate: bool = True,
         profile: bool = True, log: Callable[[str], None] = print) -> list[dict]:
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
    - profile: time each U-Net block alone (for evaluations under 5 s).

    **Returns:** one dict of figures per preset (keys as in the JSON).
    """
    check_arguments(presets, batch, repeats, matmul_size)
    info = machine()
    log(f"vdm benchmark on {info['cpu']} ({info['cores']} cores), {info['device']}, load {info['load_average']}")
    kwargs = {"batch": batch, "repeats": repeats, "sampler_steps": sampler_steps, "reference": reference,
              "reference_max_gflop": reference_max_gflop, "matmul_size": matmul_size, "profile": profile}
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
        write_json(json_path, info, results)
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
    p.add_argument("--no-profile", dest="profile", action="store_false")
    return p.parse_args(argv)


if __name__ == "__main__":
    args = vars(_parse(sys.argv[1:]))
    main(args.pop("presets"), **args)
