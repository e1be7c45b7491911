"""Where a training process's peak memory is reached: the resident set after each stage of one of
the peer benchmark's shapes (`benchmarks.peer`), from the parameters' initialisation to three
steps.

    python -m benchmarks.memory_stages --shape C --remat           # compiled ahead (what training does)
    python -m benchmarks.memory_stages --shape C --remat --lazy    # compiled at the first call

Each line: seconds since start, the stage, the current resident set (/proc/self/statm) and the
peak so far (`getrusage`'s ru_maxrss). "Ahead" is `vdm_fast.train.make_step` with an example
batch (the step compiled before the state is placed, the compiler's freed memory handed back);
"lazy" is the same call without one, so the step compiles at its first call with the state
resident. Linux only (it reads /proc).
"""

from __future__ import annotations

import argparse
import resource
import time


def resident_mb() -> tuple[float, float]:
    """(current, peak) resident set of this process in MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> list[tuple[str, float, float]]:
    """Print (and return) the stages of one shape's training step: (stage, current MiB, peak MiB)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="C", help="a shape of benchmarks.peer (A, B, C)")
    p.add_argument("--remat", action="store_true", help="rematerialise every block (--remat)")
    p.add_argument("--lazy", action="store_true", help="compile at the first call instead of ahead")
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args(argv)

    t0, rows = time.perf_counter(), []

    def stage(name: str) -> None:
        cur, peak = resident_mb()
        rows.append((name, cur, peak))
        print(f"{time.perf_counter() - t0:7.1f} s  {name:34s} current {cur:7.0f} MiB  peak {peak:7.0f} MiB",
              flush=True)

    import numpy as np

    from benchmarks.peer import SHAPES, train_config
    from vdm_fast import cpu_host
    from vdm_fast import sharding as shd
    from vdm_fast.train import make_step
    from vdm_ref.network import init
    from vdm_ref.train import Recipe, step_key

    config = train_config(SHAPES[args.shape])
    cpu_host.prepare()  # the CPU laid out as `python cli.py train` lays it out
    u, tc = config.unet, config.train
    stage("imports")
    params = init(u, 0)
    stage("parameters initialised (float64)")
    x = np.random.default_rng(0).uniform(-1, 1, (tc.batch_size, u.frames, u.image_size, u.image_size,
                                                 u.in_channels)).astype(np.float32)
    mesh = shd.data_fsdp_mesh(-1, 1)
    impl = make_step(config, Recipe(), params=params, mesh=mesh, remat=args.remat,
                     batch_parts=shd.cpu_batch_parts(mesh, tc.batch_size),
                     example_batch=None if args.lazy else {"x": x})
    del params
    stage("make_step" + ("" if args.lazy else " (compiled ahead, placed)"))
    state, batch = impl.state, impl.put_batch({"x": x})
    for n in range(args.steps):
        state, m = impl.step(state, batch, step_key(0, n))
        m["loss"].block_until_ready()
        stage(f"step {n + 1}" + (" (compiled at this call)" if args.lazy and n == 0 else ""))
    return rows


if __name__ == "__main__":
    main()
