"""The timed measurements of `benchmarks.bench`, one preset at a time: the network (compile time,
evaluation time, achieved FLOP/s against an interleaved matmul peak), the samplers through their
public API, and the NumPy reference. Each returns a dict of figures (keys as in the JSON).

Timers end every run with `jax.block_until_ready` and give (wall-clock, process CPU) seconds:
CPU time counts the work this process did (all its threads), not the time it waited for a busy
machine, so a shared machine shows up as wall > CPU.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable

import equinox as eqx


def median(xs):
    """The median of a non-empty sequence of numbers."""
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def timed(fn) -> tuple[float, float]:
    """(wall-clock, process CPU) seconds of fn(), ended by `jax.block_until_ready`."""
    import jax

    wall, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn())
    return time.perf_counter() - wall, time.process_time() - cpu


def peak_memory_mb() -> tuple[float, str]:
    """(MB, what it is): the device's `peak_bytes_in_use` on an accelerator, else the process's
    peak resident set (`getrusage` max RSS)."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2**20, "device peak_bytes_in_use"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process max RSS"


def compiled_call(fn: Callable, *args) -> tuple[Callable, object, float]:
    """fn(*args) compiled ahead of time by `jax.jit` (the arrays in args traced, the rest static).

    **Returns:** (run, compiled, seconds): run() calls the compiled program on args; compiled is
    jax's `Compiled` (cost and memory analysis); seconds = trace + lower + XLA compile.
    """
    import jax

    arrays, static = eqx.partition(args, eqx.is_array)
    program = jax.jit(lambda a: fn(*eqx.combine(a, static)))
    t0 = time.perf_counter()
    compiled = program.lower(arrays).compile()
    seconds = time.perf_counter() - t0
    return (lambda: compiled(arrays)), compiled, seconds


def xla_flops(compiled) -> float | None:
    """FLOPs of a compiled program as XLA's cost analysis counts them (None if it gives none)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"]) if cost and "flops" in cost else None


class FreeDenoiser(eqx.Module):
    """x̂ = c z: a denoiser of (almost) no cost, to time a sampler's own work."""

    c: object

    def __call__(self, z, logsnr):
        return self.c * z


def interleaved_matmul_peak(run: Callable, matmul_size: int, pairs: int) -> list[tuple]:
    """The bench's matmul peak: a float32 N×N `jnp.dot` (2N³ FLOPs) timed *interleaved* with
    `run` (matmul, run, matmul, run, ...), so that a machine shared with other work slows both
    alike; a fraction of the peak is then taken per pair. (`vdm_fast.measure.matmul_peak_flops`,
    which the training log uses, is the best of consecutive matmuls: right on an idle machine.)

    **Returns:** `pairs` tuples ((matmul wall, matmul CPU), (run wall, run CPU)) in seconds.
    """
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(1), (matmul_size, matmul_size), jnp.float32)
    matmul = jax.jit(jnp.dot).lower(a, a).compile()
    timed(lambda: matmul(a, a))
    return [(timed(lambda: matmul(a, a)), timed(run)) for _ in range(pairs)]


def measure_network(model, z, logsnr, flops: int, *, repeats: int, matmul_size: int
                    ) -> tuple[dict, Callable]:
    """Compile and time the U-Net `model(z, logsnr)` under `jax.jit`.

    flops: FLOPs of one evaluation at this batch (`vdm_ref.network.flops`). Timings are medians
    over max(2, min(repeats, ~90 s of runs)) runs after a warm-up, each paired with a matmul
    (`interleaved_matmul_peak`). **Returns:** (figures, run) with run() one compiled evaluation.
    """
    from vdm_fast.measure import matmul_peak_flops

    run, compiled, seconds = compiled_call(lambda m, z_, l: m(z_, l), model, z, logsnr)
    out = {"compile_network_s": seconds}
    memory = compiled.memory_analysis()
    out["xla_temp_mb"] = None if memory is None else memory.temp_size_in_bytes / 2**20
    counted = xla_flops(compiled)
    out["xla_gflop_per_eval"] = None if counted is None else counted / 1e9
    first, _ = timed(run)
    reps = max(2, min(repeats, int(90 / max(first, 1e-3))))
    pairs = interleaved_matmul_peak(run, matmul_size, reps)
    mm_flops = 2 * matmul_size**3
    out["network_s"] = median([t[0] for _, t in pairs])
    out["network_cpu_s"] = median([t[1] for _, t in pairs])
    out["network_gflops"] = flops / out["network_s"] / 1e9
    out["matmul_gflops"] = mm_flops / median([m[0] for m, _ in pairs]) / 1e9
    out["fraction_of_matmul_peak"] = median([(flops / t[0]) / (mm_flops / m[0]) for m, t in pairs])
    out["fraction_of_matmul_peak_cpu"] = median([(flops / t[1]) / (mm_flops / m[1]) for m, t in pairs])
    out["matmul_best_gflops"] = matmul_peak_flops(matmul_size, max(3, repeats)) / 1e9
    out["network_runs"] = reps
    return out, run


def _sampler(kind: str, denoiser, z, grid):
    """One run of a public sampler with key-drawn noise (γ = 0.1): a thunk."""
    import jax

    from vdm_fast.samplers import sample_ancestral, sample_pc

    if kind == "ancestral":
        return lambda: sample_ancestral(denoiser, z, grid, jax.random.key(2), gamma=0.1)
    return lambda: sample_pc(denoiser, z, grid, jax.random.key(2), jax.random.key(3), gamma=0.1)


def measure_samplers(denoiser, z, network_s: float, run_network: Callable, *, steps: int,
                     repeats: int, log: Callable[[str], None]) -> dict:
    """Time `vdm_fast.samplers.sample_ancestral` and `sample_pc` on `denoiser`, `steps` steps.

    - own work: the same sampler around a `FreeDenoiser` (its maths, draws and loop);
    - with the network: compile time = first call − a steady-state call; when an evaluation is
      short (< 5 s) each run is paired with a network run timed next to it, and the overhead is
      t_sampler / (evaluations × t_network) − 1, median of the per-pair ratios; else one run
      (and PC is not run with the network).
    """
    import jax.numpy as jnp

    from vdm_fast.schedule import logsnr_grid

    grid = logsnr_grid(steps)
    short = network_s < 5.0
    out = {"sampler_steps": steps}
    for kind, evals in (("ancestral", steps), ("pc", 2 * (steps - 1) + 1)):
        out[f"{kind}_evals"] = evals
        run_free = _sampler(kind, FreeDenoiser(jnp.asarray(0.9, jnp.float32)), z, grid)
        timed(run_free)
        t_free = median([timed(run_free)[0] for _ in range(max(5, repeats))])
        out[f"{kind}_own_s"] = t_free
        out[f"{kind}_own_fraction"] = t_free / (evals * network_s)
        if kind == "pc" and not short:
            log(f"{kind} sampler's own work {t_free * 1e3:.1f} ms for {evals} evaluations "
                f"({out[f'{kind}_own_fraction']:.3%} of their network time); not run with the network")
            continue
        run = _sampler(kind, denoiser, z, grid)
        first, _ = timed(run)
        steady = timed(run)
        out[f"{kind}_compile_s"] = max(first - steady[0], 0.0)
        if short:
            count = max(3, min(2 * repeats, int(150 / (evals * network_s))))
            pairs = [(timed(run), timed(run_network)) for _ in range(count)]
            out[f"{kind}_overhead"] = median([ts[0] / (evals * tn[0]) - 1 for ts, tn in pairs])
            out[f"{kind}_overhead_cpu"] = median([ts[1] / (evals * tn[1]) - 1 for ts, tn in pairs])
            t_run = median([ts[0] for ts, _ in pairs])
            out[f"{kind}_per_step_cpu_s"] = median([ts[1] for ts, _ in pairs]) / steps
        else:
            t_run = steady[0]
            out[f"{kind}_overhead"] = out[f"{kind}_overhead_cpu"] = None
        out[f"{kind}_s"] = t_run
        out[f"{kind}_per_step_s"] = t_run / steps
        direct = "" if out[f"{kind}_overhead"] is None else (
            f"overhead paired {out[f'{kind}_overhead']:+.1%} wall / {out[f'{kind}_overhead_cpu']:+.1%} CPU, ")
        log(f"{kind} sampler, {steps} steps ({evals} network evaluations): {t_run:.3f} s, "
            f"{t_run / steps * 1e3:.1f} ms/step, {direct}own work {t_free * 1e3:.1f} ms "
            f"({out[f'{kind}_own_fraction']:.3%} of the evaluations), compile {out[f'{kind}_compile_s']:.1f} s")
    return out


def measure_reference(config, params: dict, z, fast: dict, log: Callable[[str], None]) -> dict:
    """Time `vdm_ref.network.apply` in NumPy float64 (twice when the fast evaluation is < 5 s,
    else once) and, for short evaluations, `vdm_ref.samplers.sample_ancestral` on it (2 steps);
    speedups against the fast figures in `fast`."""
    import numpy as np

    from vdm_ref import network as ref_net
    from vdm_ref import samplers as ref_samplers
    from vdm_ref import schedule as ref_schedule
    from vdm_ref.parameterization import x_from_prediction

    logsnr = np.full((z.shape[0],), 0.5)

    def denoise(z_, l):
        return x_from_prediction(z_, ref_net.apply(params, config, z_, l), l, config.target)

    small = fast["network_s"] < 5.0  # else one evaluation (minutes in NumPy) and no sampler run
    t_net = [timed(lambda: ref_net.apply(params, config, z, logsnr)) for _ in range(2 if small else 1)]
    out = {"ref_network_s": median([t[0] for t in t_net]), "ref_network_cpu_s": median([t[1] for t in t_net])}
    out["speedup_network"] = out["ref_network_s"] / fast["network_s"]
    out["speedup_network_cpu"] = out["ref_network_cpu_s"] / fast["network_cpu_s"]
    msg = (f"reference network {out['ref_network_s']:.2f} s (fast ×{out['speedup_network']:.1f} wall, "
           f"×{out['speedup_network_cpu']:.1f} CPU time)")
    if small:
        steps = 2
        noise = np.random.default_rng(0).standard_normal((steps - 1,) + z.shape)
        wall, cpu = timed(lambda: ref_samplers.sample_ancestral(denoise, z, ref_schedule.logsnr_grid(steps),
                                                                 noise, gamma=0.1))
        out["ref_sampler_per_step_s"], out["ref_sampler_per_step_cpu_s"] = wall / steps, cpu / steps
        out["speedup_sampler"] = out["ref_sampler_per_step_s"] / fast["ancestral_per_step_s"]
        out["speedup_sampler_cpu"] = out["ref_sampler_per_step_cpu_s"] / fast["ancestral_per_step_cpu_s"]
        msg += (f", sampler {out['ref_sampler_per_step_s']:.2f} s/step (fast ×{out['speedup_sampler']:.1f} wall, "
                f"×{out['speedup_sampler_cpu']:.1f} CPU time)")
    log(msg)
    return out
