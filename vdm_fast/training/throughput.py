"""Training throughput: examples/s and achieved FLOP/s of the compiled step, against a matmul
peak measured in the same process.

    python -m vdm_fast.training.throughput --preset mnist-small --steps 10
    python -m vdm_fast.training.throughput --preset mnist-small --steps 10 --xla-options both --repeats 3

(the second alternates XLA's default CPU options and the project's, `vdm_fast.compile_options`, in
one process and prints the median row of each and their step-time ratio; `--materialise both`
alternates the step compiled without and with its convolution inputs materialised,
`vdm_fast.network.layers.materialised`).

FLOPs per example are 3 × the forward FLOPs of `vdm_ref.network.flops` (forward + backward ≈ 3
forward passes) at frames + image frames; the matmul peak is the best of several float32
n x n matmuls. The CPU is laid out as `python cli.py train` lays it out (`--cpu-devices`,
`vdm_fast.cpu_host.prepare`: by default one device run on the calling thread, its batch in
`vdm_fast.sharding.cpu_batch_parts` parts). The machine's load average is printed with the result,
since on a shared CPU other processes take their share.
"""

from __future__ import annotations

import json
import os
import platform
import time

import numpy as np

from vdm_fast import cpu_host
from vdm_fast.compile_options import compiler_options
from vdm_fast.measure import matmul_peak_flops


def measure(config, recipe=None, *, steps: int = 10, warmup: int = 2, data_parallel: int = -1,
            fsdp: int = 1, compute_dtype=None, remat=False, batch_parts=None) -> dict:
    """Time `steps` compiled training steps (after `warmup`) on a fixed random batch."""

    from vdm_ref.network import count_params, flops
    from vdm_ref.train import step_key

    u, tc = config.unet, config.train
    f = u.frames + tc.image_frames
    impl, batch, mesh = fixed_step(config, recipe, data_parallel=data_parallel, fsdp=fsdp,
                                   compute_dtype=compute_dtype, remat=remat, batch_parts=batch_parts)
    state, step = impl.state, impl.step
    for n in range(warmup):
        state, m = step(state, batch, step_key(0, n))
    m["loss"].block_until_ready()
    t0 = time.perf_counter()
    for n in range(steps):
        state, m = step(state, batch, step_key(0, warmup + n))
    m["loss"].block_until_ready()
    dt = (time.perf_counter() - t0) / steps
    per_example = 3 * flops(u, frames=f)
    return {"preset": config.name, "params": count_params(u), "batch_size": tc.batch_size,
            "frames": f"{u.frames}+{tc.image_frames}", "image_size": u.image_size,
            "seconds_per_step": dt, "steps_per_s": 1 / dt, "examples_per_s": tc.batch_size / dt,
            "flops_per_example": per_example, "flops_per_s": tc.batch_size * per_example / dt,
            "compile_s": impl.compile_s, "devices": mesh.size, "batch_parts": impl.batch_parts,
            "compute_dtype": compute_dtype or "float32",
            "compiler_options": compiler_options()}


def fixed_batch(config) -> dict:
    """A random host batch of the preset's training shapes (seed 0): clips in [-1, 1], the joint
    batch's frame mask, one-hot labels for a class-conditional preset."""
    u, tc = config.unet, config.train
    f = u.frames + tc.image_frames
    rng = np.random.default_rng(0)
    batch = {"x": rng.uniform(-1, 1, (tc.batch_size, f, u.image_size, u.image_size, u.in_channels)).astype(np.float32)}
    if tc.image_frames:
        batch["frame_mask"] = np.arange(f)[None].repeat(tc.batch_size, 0) >= u.frames
    if u.conditioning == "class":
        batch["label"] = np.eye(u.num_classes, dtype=np.float32)[rng.integers(0, u.num_classes, tc.batch_size)]
    return batch


def fixed_step(config, recipe=None, *, data_parallel: int = -1, fsdp: int = 1, compute_dtype=None,
               remat=False, batch_parts=None):
    """(the compiled step on a new state (`vdm_fast.train.make_step`, parameters of seed 0), the
    `fixed_batch` placed on its devices, the mesh): what `measure` times and
    `benchmarks.step_profile` traces. batch_parts None: `sharding.cpu_batch_parts`."""
    from vdm_fast import sharding as shd
    from vdm_fast.train import make_step
    from vdm_ref.network import init
    from vdm_ref.train import Recipe

    batch = fixed_batch(config)
    mesh = shd.data_fsdp_mesh(data_parallel, fsdp)
    batch_parts = shd.batch_parts(mesh, config.train.batch_size, batch_parts)
    impl = make_step(config, recipe or Recipe(), params=init(config.unet, 0), mesh=mesh,
                     compute_dtype=compute_dtype, remat=remat, batch_parts=batch_parts, example_batch=batch)
    return impl, impl.put_batch(batch), mesh


def main(argv=None) -> None:
    """Print the throughput of a preset (with optional overrides as JSON) and the matmul peak."""
    import argparse

    from .options import resolve_config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="mnist-small")
    p.add_argument("--overrides", default="{}", help="JSON of hyperparameter overrides")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--name", default=None, help="label of the row")
    p.add_argument("--xla-options", choices=("ours", "default", "both"), default="ours",
                   help="the project's XLA CPU options (vdm_fast.compile_options), XLA's defaults, "
                        "or both alternated --repeats times in this process (prints the ratio)")
    p.add_argument("--materialise", choices=("on", "off", "both"), default="on",
                   help="materialise differentiated convolution inputs on the CPU "
                        "(vdm_fast.network.layers.MATERIALISE_ON_CPU), not, or both alternated")
    p.add_argument("--repeats", type=int, default=1, help="measurements per setting (median)")
    p.add_argument("--cpu-devices", type=int, default=None,
                   help="split the CPU into this many devices, data parallel (default: one, run on the "
                        "calling thread, as `python cli.py train` does: vdm_fast.cpu_host.prepare)")
    p.add_argument("--batch-parts", type=int, default=None,
                   help="evaluate each device's batch as this many independent parts (default: "
                        "vdm_fast.sharding.cpu_batch_parts)")
    args = p.parse_args(argv)
    config = resolve_config(args.preset, json.loads(args.overrides))
    cpu_host.prepare(args.cpu_devices)
    if args.xla_options == "both" and args.materialise == "both":
        p.error("--xla-options both and --materialise both: compare one thing at a time")
    from vdm_fast import sharding as shd

    try:
        shd.batch_parts(shd.data_fsdp_mesh(-1, 1), config.train.batch_size, args.batch_parts)
    except ValueError as e:
        p.error(f"--batch-parts {args.batch_parts}: {e}")
    options = ("default", "ours") if args.xla_options == "both" else (args.xla_options,)
    materialise = (False, True) if args.materialise == "both" else (args.materialise == "on",)
    settings = [(o, m) for o in options for m in materialise]
    runs = {s: [] for s in settings}
    for _ in range(args.repeats):
        for setting in settings:
            runs[setting].append(_measure_row(config, args, *setting))
    rows = [_median_row(rs) for rs in runs.values()]
    for row in rows:
        print(json.dumps(row))
    if len(rows) == 2:
        name = ("step_time_ratio_default_over_ours" if len(options) == 2
                else "step_time_ratio_unmaterialised_over_materialised")
        print(json.dumps({name: rows[0]["seconds_per_step"] / rows[1]["seconds_per_step"],
                          "steps": args.steps, "repeats": args.repeats}))


def _measure_row(config, args, setting: str, materialise: bool = True) -> dict:
    """One `measure` with VDM_XLA_CPU_OPTIONS=setting and `layers.MATERIALISE_ON_CPU` =
    materialise, bracketed by matmul peaks."""
    import jax

    from vdm_fast.compile_options import ENV_VAR
    from vdm_fast.network import layers

    previous, previous_materialise = os.environ.get(ENV_VAR), layers.MATERIALISE_ON_CPU
    os.environ[ENV_VAR] = setting
    layers.MATERIALISE_ON_CPU = materialise
    try:
        peak = matmul_peak_flops()
        r = measure(config, steps=args.steps, batch_parts=args.batch_parts)
        peak_after = matmul_peak_flops()
    finally:
        layers.MATERIALISE_ON_CPU = previous_materialise
        if previous is None:
            os.environ.pop(ENV_VAR)
        else:
            os.environ[ENV_VAR] = previous
    r.update(name=args.name or args.preset, xla_options=setting, materialise=materialise,
             matmul_peak_flops=max(peak, peak_after),
             fraction_of_peak=r["flops_per_s"] / max(peak, peak_after), load_average=os.getloadavg(),
             cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
             device=str(jax.devices()[0].device_kind), date=time.strftime("%Y-%m-%d"))
    return r


def _median_row(rows: list[dict]) -> dict:
    """The row of median seconds per step, with every measurement's seconds listed."""
    ordered = sorted(rows, key=lambda r: r["seconds_per_step"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["seconds_per_step_all"] = [r["seconds_per_step"] for r in rows]
    return row


if __name__ == "__main__":
    main()
