"""The training loop: checks first, then the run directory, the compiled step, logs, samples and
checkpoints.

`train(options)` runs one training job described by a `TrainOptions` (the fields of the
`python cli.py train` command). Before any long work it checks everything a user can get wrong
and raises `TrainError` (one line, naming the flag or file and what to do): the options, the run
directory (`rundir.check_run_dir`: writable, never the data folder, never silently overwritten or
restarted), the devices and the batch, the memory (`memory.check_memory`), the data
(`data.make_dataset`), the checkpoint to resume from (the newest intact one; corrupt ones are
named and skipped) and its configuration. During training a non-finite loss stops the run; the
update that produced it is not applied, and the last good state is checkpointed.

Determinism: the batch of step n is drawn from `numpy.random.default_rng([seed, 1, n])` and the
step's randomness from `fold_in(key(seed), n)`, so a run resumed from a checkpoint at step n
continues exactly as the uninterrupted run would have. The run directory's files are listed in
`vdm_fast.training.rundir`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from vdm_ref.support import checkpoint as ckpt
from vdm_ref.support.eval.shift_coherence import temporal_coherence

from .data import Batcher, Prefetcher, clip_caption, make_dataset
from .errors import NonFiniteLossError, TrainError
from .memory import check_memory
from .options import TrainOptions
from .rundir import (append_metrics, check_resume_compatible, check_run_dir, plot_losses, prepare_run_dir,
                     run_metadata, write_marker, write_samples)
from vdm_fast.inputs import InputError, each_class, one_hot, resolve_checkpoint
from vdm_fast.train import BACKENDS, make_step, step_key


def train(opts: TrainOptions) -> dict:
    """Run (or resume) a training job. Returns a summary dict (also written to summary.json)."""
    import jax

    is_main = jax.process_index() == 0  # multi-host: only process 0 writes (the run dir may be shared)
    mesh = check_options(opts, is_main)
    ds = make_dataset(opts.config, opts.data)
    start_step, arrays, meta = resume_point(opts) if opts.resume else (0, None, {})
    params = None if opts.resume else initial_params(opts, is_main)
    if is_main:
        prepare_run_dir(Path(opts.run_dir), resume=opts.resume, overwrite=opts.overwrite,
                        data_dir=opts.data.data_dir)
        write_marker(Path(opts.run_dir), opts, start_step)
    run = _Run(opts, ds, mesh, start_step, arrays, params, is_main, progress0=resumed_progress(opts, meta))
    with terminate_as_interrupt():
        return run.loop()


def check_options(opts: TrainOptions, is_main: bool = True):
    """Every check that needs no data and no compilation; returns the device mesh (None for ref)."""
    tc = opts.config.train
    if opts.backend not in BACKENDS:
        raise TrainError(f"--backend {opts.backend!r}: expected one of {BACKENDS}")
    if opts.backend == "ref" and (opts.compute_dtype or opts.remat):
        raise TrainError("--bf16 and --remat apply to --backend fast; the reference runs float32 as written")
    if opts.batch_parts not in (None, 1) and opts.backend == "ref":
        raise TrainError("--batch-parts applies to --backend fast; the reference evaluates the batch whole")
    if opts.fsdp > 1 and opts.backend == "ref":
        raise TrainError("--backend ref runs on one device: drop --fsdp (or use --backend fast)")
    if opts.minutes is not None and not opts.minutes > 0:
        raise TrainError(f"--minutes {opts.minutes}: expected a positive number of minutes (omit it to "
                         "train for --steps)")
    if opts.init_from is not None and opts.resume:
        raise TrainError("--init-from starts a new run from a checkpoint's parameters; --resume continues "
                         "this run from its own checkpoints: give one of them")
    if opts.resume or is_main:  # other processes of a new multi-host run find the dir process 0 made
        check_run_dir(Path(opts.run_dir), resume=opts.resume, overwrite=opts.overwrite,
                      data_dir=opts.data.data_dir)
    mesh = None
    if opts.backend == "fast":
        from vdm_fast import sharding as shd

        try:
            mesh = shd.data_fsdp_mesh(opts.data_parallel, opts.fsdp)
            shd.check_batch_size(tc.batch_size, mesh)
        except ValueError as e:
            raise TrainError(f"--data-parallel {opts.data_parallel} --fsdp {opts.fsdp} --batch-size "
                             f"{tc.batch_size}: {e}") from None
        try:
            shd.batch_parts(mesh, tc.batch_size, opts.batch_parts)
        except ValueError as e:
            raise TrainError(f"--batch-parts {opts.batch_parts}: {e}") from None
    if not opts.skip_memory_check:
        check_memory(opts.config, per_device_batch=tc.batch_size // (mesh.size if mesh is not None else 1),
                     fsdp=opts.fsdp, remat=opts.remat)
    return mesh


def initial_params(opts: TrainOptions, is_main: bool = True) -> dict:
    """The parameters a new run starts from: θ initialised from --seed, with every array of the
    --init-from checkpoint in their place (`checkpoint.warm_start`). TrainError naming the flag
    when that checkpoint is missing, corrupt or of another architecture."""
    from vdm_ref.network import init as init_params

    params = init_params(opts.config.unet, opts.seed)
    if opts.init_from is None:
        return params
    try:
        params, fresh, unused = ckpt.warm_start(params, resolve_checkpoint(opts.init_from, "--init-from"))
    except (InputError, ckpt.CheckpointError) as e:
        raise TrainError(f"--init-from: {e}" if not str(e).startswith("--init-from") else str(e)) from None
    if is_main:
        print(f"--init-from {opts.init_from}: parameters loaded; "
              + (f"{len(fresh)} new array(s) initialised fresh: {', '.join(fresh)}" if fresh
                 else "every array loaded")
              + (f"; {len(unused)} of its array(s) have no place in this model and are not used: "
                 f"{', '.join(unused)}" if unused else ""), file=sys.stderr)
    return params


def resume_point(opts: TrainOptions) -> tuple[int, dict, dict]:
    """(step, canonical arrays, metadata) of the newest intact checkpoint of --run-dir; a corrupt newer one
    is named on stderr and skipped. TrainError when none is intact or it belongs to another run."""
    from vdm_ref.network import param_shapes

    run_dir = Path(opts.run_dir)
    path, skipped = ckpt.latest_intact_checkpoint(run_dir)
    if path is None:
        reasons = "; ".join(why for _, why in skipped)
        raise TrainError(f"--resume: no intact checkpoint in {run_dir} ({reasons}); start a new run without --resume")
    for _, why in skipped:
        print(f"warning: {why}; resuming from {path} instead", file=sys.stderr)
    arrays, meta = ckpt.load_checkpoint(path)
    check_resume_compatible(meta, opts, path)
    try:
        ckpt.check_shapes(arrays.get("params", {}), param_shapes(opts.config.unet), f"parameters of {path}")
    except ckpt.CheckpointError as e:
        raise TrainError(str(e)) from None
    start_step = int(meta["step"])
    if start_step >= opts.config.train.train_steps and opts.minutes is None:
        raise TrainError(f"--resume: {path} is at step {start_step}, already >= --steps "
                         f"{opts.config.train.train_steps}; raise --steps to train further")
    return start_step, arrays, meta


def resumed_progress(opts: TrainOptions, meta: dict) -> float:
    """p₀, where a resumed run's learning-rate decay starts: the `lr_progress` its checkpoint saved
    when that run was stopped early (so an interrupted run continues its decay), 0 when it had
    finished its budget (training on restarts at the full rate) or has no decay."""
    if opts.recipe.lr_decay == "none":
        return 0.0
    p0 = float(meta.get("lr_progress", 0.0))
    import jax

    if p0 >= 1.0 and jax.process_index() == 0:
        print(f"--lr-decay {opts.recipe.lr_decay}: the run being resumed finished its decay; this one "
              "decays again from the full learning rate to the end of its own budget", file=sys.stderr)
    return p0 if p0 < 1.0 else 0.0


TERMINATED: list[int] = []
"""The SIGTERM received while the loop runs (`terminate_as_interrupt`), which the loop raises as
KeyboardInterrupt before its next step."""


@contextlib.contextmanager
def terminate_as_interrupt():
    """SIGTERM (what `kill`, a job scheduler's preemption or a container stop sends) is handled
    as Ctrl-C while the training loop runs: the state is checkpointed before the process ends, so
    `--resume` loses nothing. Only in the main thread (where Python delivers signals).

    The handler raises KeyboardInterrupt and records the signal in TERMINATED, which the loop
    checks before every step: Python runs a handler wherever the main thread is, and an exception
    raised inside a garbage-collector callback (JAX registers one) is printed and dropped — a
    `mnist-small` run once trained on after `kill`."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        TERMINATED.append(signum)
        raise KeyboardInterrupt(f"signal {signum}")

    TERMINATED.clear()
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        TERMINATED.clear()


class _Run:
    """One training job after its checks: the state, the step, and what it writes."""

    def __init__(self, opts: TrainOptions, ds, mesh, start_step: int, arrays, params, is_main: bool,
                 progress0: float = 0.0):
        import jax

        from vdm_fast.measure import matmul_peak_flops
        from vdm_ref.network import flops
        self.opts, self.ds, self.is_main, self.start_step, self.mesh = opts, ds, is_main, start_step, mesh
        self.run_dir, self.progress0 = Path(opts.run_dir), progress0
        self.metrics_path = self.run_dir / "metrics.jsonl"
        u, tc = opts.config.unet, opts.config.train
        rows = slice(None)
        if jax.process_count() > 1:
            share = tc.batch_size // jax.process_count()
            rows = slice(jax.process_index() * share, (jax.process_index() + 1) * share)
        self.batcher = Batcher(ds, opts.config, opts.seed, rows)
        self.flops_per_example = 3 * flops(u, frames=u.frames + tc.image_frames)
        # the same process, the same moment: the achieved fraction means something. The same
        # peak as the throughput tool's (1024², best of 10); 512², best of 5, read 190 and 228
        # GFLOP/s at the start of two 20-minute runs where the tool read 256-306 (docs/benchmarks.md
        # "The convolution input as a buffer"), flattering the fraction.
        self.peak = matmul_peak_flops()
        self.t_start = time.perf_counter()  # --minutes counts from here: the step's compilation included
        from vdm_fast import sharding as shd

        self.batch_parts = 1 if mesh is None else shd.batch_parts(mesh, tc.batch_size, opts.batch_parts)
        self.impl = make_step(opts.config, opts.recipe, backend=opts.backend, params=params, arrays=arrays,
                              start_step=start_step, mesh=mesh, compute_dtype=opts.compute_dtype,
                              remat=opts.remat, batch_parts=self.batch_parts,
                              example_batch=self.batcher(start_step))

    # ---- outputs

    def save(self, state, step: int, extra=None):
        """Checkpoint `state` at `step` (every process gathers; process 0 writes), with the
        learning-rate decay's progress (`lr_progress`) for a resume."""
        arrays = self.impl.to_canonical(state)
        if not self.is_main:
            return None
        extra = dict(extra or {}, lr_progress=self.progress(step))
        return ckpt.save_checkpoint(self.run_dir, step, arrays, run_metadata(self.opts, step, extra),
                                    keep=self.opts.keep_checkpoints)

    def progress(self, step: int) -> float:
        """p ∈ [0, 1] of the learning-rate decay (`vdm_ref.train.learning_rate_at`): p₀ + (1 − p₀)·f,
        f the larger of the fraction of this run's steps done and of its --minutes elapsed (from
        the start of the loop, compile included), so a --minutes run reaches p = 1 when its time
        is up. p₀ is where a resumed run's decay stood (`resumed_progress`)."""
        total = self.opts.config.train.train_steps - self.start_step
        f = (step - self.start_step) / total if total > 0 else 1.0
        if self.opts.minutes is not None and getattr(self, "t_start", None) is not None:
            f = max(f, (time.perf_counter() - self.t_start) / (60.0 * self.opts.minutes))
        f = min(1.0, max(0.0, f))
        return self.progress0 + (1.0 - self.progress0) * f

    def samples(self, state, step: int) -> dict:
        """EMA preview samples (Eq. 4) written to samples/ and logged; {} when off or not process 0."""
        import jax
        import jax.numpy as jnp

        from ._sample import sample_videos

        opts, u = self.opts, self.opts.config.unet
        if not self.is_main or opts.num_samples <= 0:
            return {}
        t0 = time.perf_counter()
        ema = jax.tree.map(lambda x: jnp.asarray(jax.device_get(x)), state["ema"])
        cond = None
        if u.conditioning == "class":
            cond = jnp.asarray(one_hot(each_class(opts.num_samples, u.num_classes), u.num_classes))
        elif u.conditioning == "text":
            captions = [clip_caption(self.ds, i) for i in range(opts.num_samples)]
            cond = tuple(jnp.asarray(a) for a in self.batcher.conditions.captions(captions))
        videos = np.asarray(sample_videos(
            ema, jax.random.fold_in(jax.random.key(opts.seed + 7919), step), config=opts.config,
            num=opts.num_samples, steps=opts.sample_steps, cond=cond))
        info = {"step": step, "kind": "samples", "sample_steps": opts.sample_steps,
                **write_samples(videos, self.run_dir / "samples", f"step_{step:08d}", mp4=opts.mp4)}
        if opts.data.data_dir is None:  # the shift coherence measures Moving MNIST's rigid motion only
            info["coherence"] = temporal_coherence(videos)
        info["seconds"] = time.perf_counter() - t0
        self.log(info)
        return info

    def log(self, row: dict) -> None:
        """Append one JSON line to metrics.jsonl (process 0)."""
        if self.is_main:
            append_metrics(self.metrics_path, row)

    # ---- the loop

    def loop(self) -> dict:
        """Steps until --steps or --minutes, with logs, checkpoints and samples; the summary.

        A step's metrics are read one step late, once the next step is queued, so the devices
        never wait for the host between steps; the step after a non-finite one is queued with
        `proceed` False and leaves the state as it was (`vdm_fast.train.make_train_step`)."""
        from vdm_fast.measure import matmul_peak_flops
        from vdm_ref.network import count_params

        opts, peak, t_start = self.opts, self.peak, self.t_start
        deadline = None if opts.minutes is None else t_start + 60.0 * opts.minutes
        state, step, last_sample = self.impl.state, self.start_step, {}
        compile_s, pending, proceed = self.impl.compile_s, None, True
        progress = _Progress(self, deadline)
        prefetch = Prefetcher(self.batcher, step)
        try:
            while step < opts.config.train.train_steps and (deadline is None or time.perf_counter() < deadline):
                if TERMINATED:  # a SIGTERM whose KeyboardInterrupt was dropped (terminate_as_interrupt)
                    raise KeyboardInterrupt(f"signal {TERMINATED[0]}")
                t_step = time.perf_counter()
                state, m = self.impl.step(state, self.impl.put_batch(prefetch.get(step)), step_key(opts.seed, step),
                                          self.progress(step), proceed)
                proceed = m["applied"]
                if pending is not None:  # the previous step's metrics, while this one runs
                    self.account(*pending, progress)
                pending, step = (step, m), step + 1
                if step == self.start_step + 1:  # the first step: its time is the compile's when not ahead
                    self.account(*pending, progress)
                    pending, compile_s = None, compile_s if compile_s is not None else time.perf_counter() - t_step
                    progress.restart(step)
                if self.checkpoint_due(step) or self.samples_due(step):
                    if pending is not None:
                        self.account(*pending, progress)
                        pending = None
                    self.periodic(state, step, last_sample)
            if pending is not None:
                self.account(*pending, progress)
        except NonFiniteLossError as e:
            self.save(state, e.step, {"stopped": "non-finite loss"})
            raise
        except KeyboardInterrupt:
            try:  # the interrupted step may have consumed (donated) the state; then the last checkpoint stands
                if pending is not None and not bool(pending[1]["applied"]):  # unread, and not finite
                    self.save(state, pending[0], {"stopped": "non-finite loss"})
                else:
                    self.save(state, step, {"stopped": "interrupted"})
            except Exception:  # noqa: BLE001
                print(f"interrupted at step {step}; the newest checkpoint in {self.run_dir / 'checkpoints'} "
                      "stands", file=sys.stderr)
            raise
        finally:
            prefetch.close()
            progress.close()
        final = self.save(state, step) if step > self.start_step or not opts.resume \
            else ckpt.latest_checkpoint(self.run_dir)
        if self.is_main:
            plot_losses(self.metrics_path, self.run_dir / "loss.png")
        last_sample = self.samples(state, step) or last_sample.get("info", {})
        summary = {"step": step, "start_step": self.start_step, "seconds": time.perf_counter() - t_start,
                   "matmul_peak_flops": max(peak, matmul_peak_flops()), "load_average": os.getloadavg(),
                   "compile_seconds": compile_s, "checkpoint": str(final) if final else None,
                   "params": count_params(opts.config.unet), "samples": last_sample,
                   "devices": dict(_devices(self.mesh), batch_parts=self.batch_parts)}
        if self.is_main:
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        return summary

    def account(self, step: int, m: dict, progress: "_Progress") -> None:
        """Read step `step`'s metrics (waiting for it) into the progress bar and the log;
        NonFiniteLossError when its loss or gradient norm is not finite."""
        loss, grad_norm = float(m["loss"]), float(m["grad_norm"])
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            raise NonFiniteLossError(
                f"non-finite loss {loss} (gradient norm {grad_norm}) at step {step}: training "
                f"stopped. The update was not applied; the last good state (step {step}) is "
                f"checkpointed in {self.run_dir / 'checkpoints'}. Lower --learning-rate, check the "
                "data, or resume from an earlier checkpoint.", step=step)
        progress.update(step + 1, loss, grad_norm, m, self.peak)

    def checkpoint_due(self, step: int) -> bool:
        """A checkpoint (and loss.png) every --checkpoint-every steps."""
        return step % self.opts.checkpoint_every == 0

    def samples_due(self, step: int) -> bool:
        """Preview samples every --sample-every steps (the final ones are drawn after the loop)."""
        opts = self.opts
        return bool(opts.sample_every) and step % opts.sample_every == 0 and step != opts.config.train.train_steps

    def periodic(self, state, step: int, last_sample: dict) -> None:
        """Checkpoint (and redraw loss.png) and draw samples when they are due at `step`."""
        if self.checkpoint_due(step):
            self.save(state, step)
            if self.is_main:
                plot_losses(self.metrics_path, self.run_dir / "loss.png")
        if self.samples_due(step):
            last_sample["info"] = self.samples(state, step)


class _Progress:
    """The progress bar and the metrics.jsonl rows of each --log-every interval. Under --minutes
    the bar's total is the number of steps the deadline allows at the measured rate (capped by
    --steps), so its ETA is the time left, not the preset's steps."""

    def __init__(self, run: _Run, deadline: float | None):
        from tqdm import tqdm

        self.run, self.deadline, self.t_start = run, deadline, run.t_start
        self.total_steps = run.opts.config.train.train_steps
        self.restart(run.start_step)
        self.bar = tqdm(total=self.total_steps if deadline is None else None, initial=run.start_step,
                        disable=not (run.opts.progress and run.is_main), dynamic_ncols=True, smoothing=0.05,
                        unit="step", file=sys.stderr)

    def restart(self, step0: int) -> None:
        """Start a new logging window at step0 (after the first, compiling, step)."""
        self.window = {"loss": [], "grad_norm": [], "t0": time.perf_counter(), "step0": step0}

    def update(self, step: int, loss: float, grad_norm: float, m: dict, peak: float) -> None:
        """Count one step; at the end of a logging interval write its row and refresh the bar."""
        tc, w = self.run.opts.config.train, self.window
        w["loss"].append(loss)
        w["grad_norm"].append(grad_norm)
        self.bar.update(1)
        if step % self.run.opts.log_every and step != self.total_steps:
            return
        dt, n = time.perf_counter() - w["t0"], step - w["step0"]
        rate = n / dt if n > 0 and dt > 0 else float("nan")
        flops_per_s = rate * tc.batch_size * self.run.flops_per_example
        row = {"step": step, "loss": float(np.mean(w["loss"])), "grad_norm": float(np.mean(w["grad_norm"])),
               "learning_rate": float(m["learning_rate"]), "ema_decay": float(m["ema_decay"]),
               "steps_per_s": rate, "examples_per_s": rate * tc.batch_size, "flops_per_s": flops_per_s,
               "matmul_peak_flops": peak, "fraction_of_matmul_peak": flops_per_s / peak,
               "elapsed_s": time.perf_counter() - self.t_start}
        self.run.log(row)
        post = {"loss": f"{row['loss']:.4f}", "ex_s": f"{row['examples_per_s']:.1f}"}
        if self.deadline is not None:
            left = max(0.0, self.deadline - time.perf_counter())
            post["stops_in"] = f"{int(left // 60)}:{int(left % 60):02d}"
            if math.isfinite(rate):
                self.bar.total = min(self.total_steps, step + int(rate * left))
        self.bar.set_postfix(post)
        self.restart(step)

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()


def _devices(mesh) -> dict:
    """The devices a run trained on: their kind and the mesh's axis sizes (one device for ref)."""
    import jax

    kind = jax.devices()[0].device_kind
    return {"kind": kind, "mesh": dict(mesh.shape) if mesh is not None else {"data": 1}}
