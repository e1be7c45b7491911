"""Where a compiled training step's time goes: a `jax.profiler` trace of a few steps, its XLA
operations grouped by kind and summed over the threads that ran them.

    python -m benchmarks.step_profile --preset mnist-small --steps 5 --top 15
    python -m benchmarks.step_profile --no-materialise      # convolution inputs not materialised

The step is built as `python -m vdm_fast.training.throughput` builds it (the CPU laid out as
`python cli.py train` lays it out, on `throughput.fixed_step`'s batch), run twice,
timed over `--steps` steps, then traced over as many more (the trace slows them). Each XLA
operation's events are read back with `jax.profiler.ProfileData` and grouped by the operation's
name without its number (`transpose_copy_fusion.94` → `transpose_copy_fusion`); the times are per step, summed over the
devices' threads (so on 2 CPU devices they add up to at most twice the step). On the CPU, a
convolution runs partly outside its event (its work items carry none) and waiting threads show
as `Rendezvous` / `Wait` events: the table is a guide to the step's composition, not a partition
of it. `--no-materialise` turns `vdm_fast.network.layers.MATERIALISE_ON_CPU` off before the step
is compiled.
"""

from __future__ import annotations

import argparse
import collections
import glob
import re
import tempfile
import time

#: Events that are not XLA operations (the executor's own spans): left out of the table.
NOT_OPERATIONS = ("ThunkExecutor::Execute", "ThreadpoolListener::")


def operation_times(trace_dir: str, steps: int) -> dict[str, tuple[float, int]]:
    """{kind: (ms per step, events per step)} over the XLA threads of a trace in `trace_dir`."""
    import jax

    (path,) = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)
    data = jax.profiler.ProfileData.from_file(path)
    total, count = collections.Counter(), collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            if "XLAEigen" not in line.name:  # the threads that run the operations on the CPU
                continue
            for event in line.events:
                if event.name.startswith(NOT_OPERATIONS) or event.name.startswith("end: "):
                    continue
                kind = re.sub(r"\.\d+$", "", event.name.split(":")[0])  # "Wait: pending_threads=1/2" → "Wait"
                kind = re.sub(r"\s+", "_", kind.strip())  # one word per kind
                total[kind] += event.duration_ns
                count[kind] += 1
    return {k: (v / 1e6 / steps, count[k] // steps) for k, v in total.most_common()}


def main(argv=None) -> dict[str, tuple[float, int]]:
    """Print the step time and the table of operation kinds; return the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="mnist-small")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--top", type=int, default=15, help="rows of the table")
    p.add_argument("--no-materialise", action="store_true",
                   help="compile without materialising convolution inputs (layers.MATERIALISE_ON_CPU)")
    args = p.parse_args(argv)

    from vdm_fast import cpu_host
    from vdm_fast.training.options import resolve_config
    from vdm_fast.training.throughput import fixed_step

    try:
        config = resolve_config(args.preset, {})
    except ValueError as e:  # an unknown preset: one line, before any work
        p.error(str(e))
    cpu_host.prepare()  # the CPU laid out as `python cli.py train` lays it out

    import jax

    from vdm_fast.network import layers
    from vdm_ref.train import step_key

    layers.MATERIALISE_ON_CPU = not args.no_materialise
    impl, batch, _ = fixed_step(config)
    state = impl.state
    for n in range(2):
        state, m = impl.step(state, batch, step_key(0, n))
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for n in range(args.steps):
        state, m = impl.step(state, batch, step_key(0, 2 + n))
    jax.block_until_ready(m)
    seconds = (time.perf_counter() - t0) / args.steps
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            for n in range(args.steps):
                state, m = impl.step(state, batch, step_key(0, 2 + args.steps + n))
            jax.block_until_ready(m)
        table = operation_times(d, args.steps)
    shown = sum(ms for ms, _ in table.values())
    print(f"{config.name}: {seconds:.3f} s/step untraced, {jax.device_count()} device(s), the batch in "
          f"{impl.batch_parts} part(s); operation events {shown:.0f} ms per step over all threads")
    print(f"{'operation kind':32s} {'ms/step':>9s} {'share':>6s} {'events/step':>11s}")
    for kind, (ms, n) in list(table.items())[: args.top]:
        print(f"{kind:32s} {ms:9.1f} {100 * ms / shown:5.1f}% {n:11d}")
    return table


if __name__ == "__main__":
    main()
