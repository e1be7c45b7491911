"""Peer benchmark (issue 14): lucidrains' video-diffusion-pytorch 0.7.0 ("VDP", PyTorch) and our
`vdm_fast` timed on the same shapes in one run.

    python -m benchmarks.peer --peer-python /tmp/vdp-venv/bin/python             # shapes A, B, C
    python -m benchmarks.peer --peer-python /tmp/vdp-venv/bin/python --shapes A --repeats 2

Shapes (`SHAPES`; video F×S×S×3, base channels × multipliers, attention):

- A: B=2, 8×32×32×3, 32 ch × (1,2,4), attention at every level;
- B: B=1, 16×64×64×3, 64 ch × (1,2,4,8), attention at every level;
- C: B (same video and channels) with attention at 32, 16, 8 only (the paper's choice); ours
  only, compared per FLOP with the peer at B.

Ours is `UNetConfig(channels, channel_mult, num_res_blocks=2, head_dim=32, emb_dim=4·channels,
emb_mlp_layers=2, norm_groups=8)`, unconditional, ε target, no image frames (VDP's
`Unet3D(dim=channels, dim_mults=...)` defaults: 2 residual blocks per level, heads of 32, a
4·dim time embedding; its spatial attention is linear at every level, full in the middle).

Figures, each phase (network evaluation, training step) of each model in a process of its own
(so its peak memory is its own; the peak resident set is read by the parent with `wait4`, so it
is there also when the child is killed for memory):

- params; GFLOP of one forward per example (ours: `vdm_ref.network.flops`; the peer:
  `torch.utils.flop_counter.FlopCounterMode` around one forward);
- network eval: median wall-clock of `repeats` forwards after a warm-up (ours: the jitted
  `vdm_fast.network` U-Net, float32; the peer: `torch.inference_mode()`), and process CPU time;
- train step: ours the compiled AdamW + EMA step of `vdm_fast.training.throughput.measure`
  (mean of `repeats` steps after the compile and one warm-up step); the peer
  `GaussianDiffusion(model, loss_type='l2')(x).backward()` + `Adam.step()` (median);
- our train step runs on the CPU split as `python cli.py train` splits it (2 devices, data
  parallel, for the even batch of A; one device for B and C);
- per-FLOP ratio: (our FLOP/s) / (the peer's FLOP/s), each counted by its own counter, training
  FLOPs = 3 × forward for both.

The peer runs in a throwaway virtualenv given by `--peer-python` (`benchmarks/peer_vdp.py`, which
imports only torch and the peer); it is never a project dependency. docs/benchmarks.md, "Peer
benchmark", says how to make that venv.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER_SCRIPT = Path(__file__).resolve().parent / "peer_vdp.py"


@dataclasses.dataclass(frozen=True)
class Shape:
    """One benchmark shape: a batch of videos [batch, frames, size, size, 3] and the U-Net width.

    `attn_resolutions` None means every level; `peer` whether VDP runs at this shape, else
    `compare_with` names the shape whose peer row the per-FLOP ratio uses.
    """

    name: str
    batch: int
    frames: int
    size: int
    channels: int
    mults: tuple[int, ...]
    attn_resolutions: tuple[int, ...] | None = None
    head_dim: int = 32
    peer: bool = True
    compare_with: str | None = None

    @property
    def label(self) -> str:
        attn = ("attention at every level" if self.attn_resolutions is None else
                "attention at " + ", ".join(map(str, self.attn_resolutions)))
        return (f"B={self.batch}, {self.frames}x{self.size}x{self.size}x3, {self.channels} ch x "
                f"({','.join(map(str, self.mults))}), {attn}")


SHAPES = {
    "A": Shape("A", 2, 8, 32, 32, (1, 2, 4)),
    "B": Shape("B", 1, 16, 64, 64, (1, 2, 4, 8)),
    "C": Shape("C", 1, 16, 64, 64, (1, 2, 4, 8), attn_resolutions=(32, 16, 8), peer=False,
               compare_with="B"),
    # test-sized (seconds): the driver's plumbing, not a figure
    "T": Shape("T", 1, 4, 16, 16, (1, 2), head_dim=8),
}


def unet_config(shape: Shape):
    """Our `UNetConfig` for a shape (module docstring)."""
    from vdm_ref.configs import UNetConfig

    levels = tuple(shape.size // 2**i for i in range(len(shape.mults)))
    return UNetConfig(channels=shape.channels, channel_mult=shape.mults, num_res_blocks=2,
                      attn_resolutions=levels if shape.attn_resolutions is None else shape.attn_resolutions,
                      head_dim=shape.head_dim, emb_dim=4 * shape.channels, emb_mlp_layers=2,
                      dropout=0.0, frames=shape.frames, image_size=shape.size, in_channels=3,
                      out_channels=3, target="eps", norm_groups=8)


def train_config(shape: Shape):
    """Our `Config` for a shape's training step: batch `shape.batch`, no image frames."""
    from vdm_ref.configs import Config, TrainConfig

    return Config(f"peer-{shape.name}", "synthetic", unet_config(shape),
                  train=TrainConfig(batch_size=shape.batch, image_frames=0, learning_rate=1e-4))


# --- our side, in a process of its own ------------------------------------------------------------


def ours_phase(shape: Shape, phase: str, repeats: int, remat: bool = False) -> dict:
    """Measure one phase of vdm_fast in this process; returns the figures as a dict. `remat`:
    the training step rematerialises every block (`--remat`). The training step lays the CPU out
    as `python cli.py train` does (`vdm_fast.cpu_host.prepare`: one device run on the calling
    thread, an even batch in `sharding.cpu_batch_parts` parts), so the step timed is the one a
    user trains with."""
    import jax

    from vdm_fast import cpu_host
    from vdm_ref.network import count_params, flops

    if phase == "train":
        cpu_host.prepare()

    cfg = unet_config(shape)
    out = {"model": "vdm_fast", "phase": phase, "params": count_params(cfg), "batch": shape.batch,
           "video": [shape.frames, shape.size, shape.size, 3], "flops_fwd_per_example": flops(cfg),
           "jax": jax.__version__, "device": str(jax.devices()[0].device_kind),
           "python": platform.python_version(), "load_average_start": os.getloadavg(), "remat": remat}
    if phase == "eval":
        import equinox as eqx
        import jax.numpy as jnp

        from vdm_fast.network import from_params
        from vdm_ref.network import init

        model = from_params(cfg, init(cfg, 0))
        arrays, static = eqx.partition(model, eqx.is_array)
        z = jax.random.normal(jax.random.key(0), (shape.batch, shape.frames, shape.size, shape.size, 3))
        logsnr = jnp.full((shape.batch,), 0.5, jnp.float32)
        t0 = time.perf_counter()
        compiled = jax.jit(lambda p, z_, l: eqx.combine(p, static)(z_, l)).lower(arrays, z, logsnr).compile()
        out["compile_s"] = time.perf_counter() - t0
        times = []
        for _ in range(repeats + 1):
            wall, cpu = time.perf_counter(), time.process_time()
            jax.block_until_ready(compiled(arrays, z, logsnr))
            times.append((time.perf_counter() - wall, time.process_time() - cpu))
        times = times[1:]
        out["eval_s"] = _median([w for w, _ in times])
        out["eval_cpu_s"] = _median([c for _, c in times])
        out["eval_times_s"] = [w for w, _ in times]
    elif phase == "train":
        from vdm_fast.training.throughput import measure

        r = measure(train_config(shape), steps=repeats, warmup=2, remat=remat)
        out.update(train_step_s=r["seconds_per_step"], compile_s=r["compile_s"], devices=r["devices"])
    else:
        raise ValueError(f"phase={phase!r}: expected 'eval' or 'train'")
    out["load_average_end"] = os.getloadavg()
    return out


def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


# --- the driver -----------------------------------------------------------------------------------


def run_child(cmd: list[str], timeout: float) -> dict:
    """Run `cmd` (cwd = the repository root); its last stdout line that parses as a JSON object,
    plus `peak_rss_mb` (the child's max RSS from `wait4`) and `wall_s`; on failure (non-zero
    exit, signal, timeout, no JSON) {"error": what happened, ...} instead of the figures."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 > timeout:
                proc.kill()
                timed_out = True
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.1)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    result = {"peak_rss_mb": usage.ru_maxrss / 1024, "wall_s": time.perf_counter() - t0,
              "returncode": proc.returncode}
    parsed = None
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                parsed = json.loads(line)
                break
            except json.JSONDecodeError:
                continue
    if timed_out:
        result["error"] = f"timed out after {timeout:.0f} s"
    elif proc.returncode != 0:
        result["error"] = failure_reason(proc.returncode, stderr)
    elif not isinstance(parsed, dict):
        result["error"] = "no JSON line on stdout: " + (stdout.strip().splitlines() or ["(empty)"])[-1][:200]
    else:
        parsed.pop("peak_rss_mb", None)  # the parent's wait4 figure is the one reported
        result.update(parsed)
    if "error" in result:
        result["stderr_tail"] = stderr[-2000:]
    return result


def failure_reason(returncode: int, stderr: str) -> str:
    """One line saying why a child failed: the signal, or the last error line of its stderr
    (out-of-memory messages first)."""
    if returncode < 0:
        name = signal.Signals(-returncode).name
        return f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for key in ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory", "MemoryError"):
        for ln in reversed(lines):
            if key in ln:
                return ln[:300]
    for ln in reversed(lines):
        if "Error" in ln or "error" in ln:
            return ln[:300]
    return f"exit status {returncode}" + (f": {lines[-1][:200]}" if lines else "")


def peer_command(python: str, script: str | Path, shape: Shape, phase: str, repeats: int,
                 threads: int | None) -> list[str]:
    """The command line of one peer phase (`benchmarks/peer_vdp.py` or a stand-in script)."""
    cmd = [python, str(script), "--phase", phase, "--batch", str(shape.batch), "--frames",
           str(shape.frames), "--size", str(shape.size), "--channels", str(shape.channels),
           "--mults", *map(str, shape.mults), "--repeats", str(repeats)]
    return cmd + (["--threads", str(threads)] if threads else [])


def ours_command(shape: Shape, phase: str, repeats: int, remat: bool = False) -> list[str]:
    """The command line of one of our phases (this module's `--worker`)."""
    return [sys.executable, "-m", "benchmarks.peer", "--worker", "--shape", shape.name,
            "--phase", phase, "--repeats", str(repeats)] + (["--remat"] if remat else [])


def merge(eval_row: dict, train_row: dict) -> dict:
    """One model's row at one shape from its two phase results (either may carry an error)."""
    row = {k: v for k, v in eval_row.items() if k in ("model", "params", "batch", "video", "flops_fwd_per_example")}
    for k in ("model", "params", "batch", "video"):
        row.setdefault(k, train_row.get(k))
    row.update(eval_s=eval_row.get("eval_s"), eval_cpu_s=eval_row.get("eval_cpu_s"),
               train_step_s=train_row.get("train_step_s"), train_step_cpu_s=train_row.get("train_step_cpu_s"),
               compile_eval_s=eval_row.get("compile_s"),
               compile_train_s=train_row.get("compile_s"), peak_rss_eval_mb=eval_row.get("peak_rss_mb"),
               peak_rss_train_mb=train_row.get("peak_rss_mb"), eval_error=eval_row.get("error"),
               train_error=train_row.get("error"))
    if row.get("flops_fwd_per_example") is None:
        row["flops_fwd_per_example"] = train_row.get("flops_fwd_per_example")
    flops, batch = row.get("flops_fwd_per_example"), row.get("batch")
    if flops and batch and row["eval_s"]:
        row["eval_flops_per_s"] = flops * batch / row["eval_s"]
    if flops and batch and row["train_step_s"]:
        row["train_flops_per_s"] = 3 * flops * batch / row["train_step_s"]
    return row


def ratios(rows: list[dict]) -> list[dict]:
    """Per-FLOP ratios, ours / the peer's, at each shape with an our row (the peer row of the
    same shape, or of `compare_with`)."""
    peer = {r["shape"]: r for r in rows if r["model"] == "VDP"}
    out = []
    for r in rows:
        if r["model"] != "vdm_fast":
            continue
        shape = SHAPES.get(r["shape"])
        against = (shape and shape.compare_with) or r["shape"]
        p = peer.get(against)
        if p is None:
            continue
        ratio = lambda key: (r[key] / p[key]) if r.get(key) and p.get(key) else None  # noqa: E731
        mem = (r["peak_rss_train_mb"] / p["peak_rss_train_mb"]
               if r.get("peak_rss_train_mb") and p.get("peak_rss_train_mb") and not r.get("train_error")
               and not p.get("train_error") else None)
        out.append({"shape": r["shape"], "against": against, "eval_per_flop": ratio("eval_flops_per_s"),
                    "train_per_flop": ratio("train_flops_per_s"), "train_memory": mem})
    return out


def _s(x, unit=" s", fmt="{:.3g}"):
    return "—" if x is None else fmt.format(x) + unit


def _gb(mb):
    return "—" if mb is None else f"{mb / 1024:.2f} GB"


def markdown(result: dict) -> str:
    """The run as Markdown: a conditions line, the table of figures, the per-FLOP ratios."""
    lines = [f"Measured {result['date']} on {result['machine']} ({result['cores']} cores), "
             f"jax {result.get('jax', '?')}, torch {result.get('torch', '?')}, repeats {result['repeats']}; "
             f"load average at start {result['load_average_start'][0]:.1f}, "
             f"at end {result['load_average_end'][0]:.1f}"
             + ("; our training step rematerialises every block (`--remat`)." if result.get("remat") else "."), "",
             "| shape | model | params | GFLOP fwd / example | network eval (CPU time) | train step (CPU time, peer) | "
             "compile eval / step | peak RSS eval / train | GFLOP/s eval / train |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        train = (_s(r["train_step_s"]) + (f" ({_s(r['train_step_cpu_s'])})" if r.get("train_step_cpu_s") else "")
                 if not r["train_error"] else f"**failed: {r['train_error']}**")
        ev = (f"{_s(r['eval_s'])} ({_s(r['eval_cpu_s'])})" if not r["eval_error"]
              else f"**failed: {r['eval_error']}**")
        flops = r.get("flops_fwd_per_example")
        lines.append(
            f"| {r['shape']}: {SHAPES[r['shape']].label if r['shape'] in SHAPES else r['shape']} | {r['model']} | "
            f"{_s(r.get('params') and r['params'] / 1e6, 'M', '{:.2f}')} | {_s(flops and flops / 1e9, '', '{:.1f}')} | "
            f"{ev} | {train} | {_s(r['compile_eval_s'], '', '{:.1f}')} / {_s(r['compile_train_s'], ' s', '{:.1f}')} | "
            f"{_gb(r['peak_rss_eval_mb'])} / {_gb(r['peak_rss_train_mb'])} | "
            f"{_s(r.get('eval_flops_per_s') and r['eval_flops_per_s'] / 1e9, '', '{:.1f}')} / "
            f"{_s(r.get('train_flops_per_s') and r['train_flops_per_s'] / 1e9, '', '{:.1f}')} |")
    if result["ratios"]:
        lines += ["", "| shape | against the peer at | per-FLOP ratio, network eval | per-FLOP ratio, train step "
                  "| peak RSS (train), ours / peer |", "|---|---|---:|---:|---:|"]
        for q in result["ratios"]:
            lines.append(f"| {q['shape']} | {q['against']} | {_s(q['eval_per_flop'], 'x', '{:.2f}')} | "
                         f"{_s(q['train_per_flop'], 'x', '{:.2f}')} | {_s(q['train_memory'], 'x', '{:.2f}')} |")
    return "\n".join(lines)


def _machine() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(shapes: list[str], *, peer_python: str | None, peer_script: str | Path = PEER_SCRIPT,
        repeats: int = 5, threads: int | None = None, timeout: float = 3600.0, sides=("peer", "ours"),
        remat: bool = False, log=print) -> dict:
    """Measure every shape, peer then ours, each phase in a child process; returns the result
    dict (rows, ratios, conditions) that `markdown` formats."""
    result = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": _machine(), "cores": os.cpu_count(), "repeats": repeats,
              "load_average_start": os.getloadavg(), "remat": remat, "rows": [], "phases": []}
    for name in shapes:
        shape = SHAPES[name]
        jobs = []
        if "peer" in sides and shape.peer:
            if peer_python:
                jobs.append(("VDP", lambda ph: peer_command(peer_python, peer_script, shape, ph, repeats, threads)))
            else:
                log(f"[{name}] peer skipped: no --peer-python")
        if "ours" in sides:
            jobs.append(("vdm_fast", lambda ph: ours_command(shape, ph, repeats, remat)))
        for model, command in jobs:
            phase_rows = {}
            for phase in ("eval", "train"):
                log(f"[{name}] {model} {phase} ...")
                row = run_child(command(phase), timeout)
                row.setdefault("model", model)
                result["phases"].append({"shape": name, "phase": phase, **row})
                for key in ("torch", "jax"):
                    if key in row:
                        result[key] = row[key]
                seconds = row.get("eval_s" if phase == "eval" else "train_step_s")
                log(f"[{name}] {model} {phase}: " + (f"failed: {row['error']}" if "error" in row else
                    f"{_s(seconds)}, peak RSS {row['peak_rss_mb']:.0f} MB"))
                phase_rows[phase] = row
            result["rows"].append({"shape": name, **merge(phase_rows["eval"], phase_rows["train"]),
                                   "model": model})
    result["ratios"] = ratios(result["rows"])
    result["load_average_end"] = os.getloadavg()
    return result


def main(argv=None) -> None:
    """Command line: the driver, or (`--worker`) one of our phases printing its JSON line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peer-python", default=None, help="python of the peer's virtualenv")
    p.add_argument("--peer-script", default=str(PEER_SCRIPT), help="the peer's side (default: %(default)s)")
    p.add_argument("--shapes", nargs="+", default=["A", "B", "C"], choices=sorted(SHAPES))
    p.add_argument("--sides", nargs="+", default=["peer", "ours"], choices=["peer", "ours"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads for the peer (default: torch's)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per phase process")
    p.add_argument("--json", default=None, help="write the whole result here")
    p.add_argument("--remat", action="store_true", help="our training step rematerialises every block")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--shape", default=None, help=argparse.SUPPRESS)
    p.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print(json.dumps(ours_phase(SHAPES[a.shape], a.phase, a.repeats, a.remat)), flush=True)
        return
    if a.json:  # before the hour of measurements
        from vdm_fast.inputs import InputError, check_writable

        try:
            check_writable(a.json, "--json")
        except InputError as e:
            p.error(str(e))
    result = run(a.shapes, peer_python=a.peer_python, peer_script=a.peer_script, repeats=a.repeats,
                 threads=a.threads, timeout=a.timeout, sides=a.sides, remat=a.remat)
    print(markdown(result), flush=True)  # first: a failed write below loses nothing
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
