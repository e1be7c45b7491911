"""The peer's side of `benchmarks.peer`: lucidrains' video-diffusion-pytorch 0.7.0 ("VDP"), timed
in its own throwaway virtualenv (torch CPU), one phase per process, one JSON line on stdout.

    /tmp/vdp-venv/bin/python benchmarks/peer_vdp.py --phase eval --batch 2 --frames 8 \
        --size 32 --channels 32 --mults 1 2 4 --repeats 3

This file imports only the standard library, torch and video_diffusion_pytorch: it never runs in
the project's environment (docs/benchmarks.md, "Peer benchmark", says how to make the venv).

Model: `Unet3D(dim=channels, dim_mults=mults, channels=3)` with the package's defaults (8 heads
of 32, linear spatial attention at every level and full spatial attention in the middle block,
temporal attention everywhere, 4·dim time embedding).

- eval: `model(x, t)` under `torch.inference_mode()`, x: [B, 3, F, S, S]; median of `repeats`
  runs after one warm-up (wall-clock, and process CPU time: all threads, not the waits). FLOPs of one forward at batch B, counted by
  `torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions, attention), per example.
- train: `GaussianDiffusion(model, loss_type='l2')(x)` (t ~ U{0..999}, ε-MSE), `backward()`,
  `Adam.step()`; median of `repeats` steps after one warm-up step.

Peak memory is this process's `getrusage` max RSS (the phase alone: one process per phase).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
import types


class _Unavailable:
    """Stands in for a torchvision transform: built freely (VDP builds `T.ToTensor()` as a default
    argument at import), raises if ever applied."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        raise RuntimeError("torchvision is stubbed in the peer benchmark: VDP's GIF/Trainer data "
                           "pipeline is not available")


def _stub_torchvision() -> None:
    """VDP imports `from torchvision import transforms as T, utils` for its Trainer's data
    pipeline only (and builds `T.ToTensor()` as a default argument); the network and
    GaussianDiffusion never touch them. Where torchvision is not installed, a stub module stands
    in (PyPI's torchvision does not import beside the CPU torch wheel, and a matching one is a
    CUDA build of several GB)."""
    try:
        import torchvision  # noqa: F401
        return
    except ImportError:
        pass
    tv = types.ModuleType("torchvision")
    tv.transforms = types.ModuleType("torchvision.transforms")
    for name in ("ToTensor", "ToPILImage", "Compose", "Resize", "RandomHorizontalFlip", "Lambda",
                 "CenterCrop"):
        setattr(tv.transforms, name, _Unavailable)
    tv.utils = types.ModuleType("torchvision.utils")
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tv.transforms,
                        "torchvision.utils": tv.utils})


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(fn) -> tuple[float, float]:
    """(wall-clock, process CPU) seconds of fn(); CPU time counts all this process's threads."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def run(phase: str, batch: int, frames: int, size: int, channels: int, mults: tuple[int, ...],
        repeats: int, threads: int | None, seed: int = 0) -> dict:
    """Measure one phase ('eval' or 'train') of VDP; returns the figures as a dict."""
    import torch

    _stub_torchvision()
    import video_diffusion_pytorch
    from video_diffusion_pytorch import GaussianDiffusion, Unet3D

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = Unet3D(dim=channels, dim_mults=tuple(mults), channels=3)
    out = {"model": "VDP", "phase": phase, "params": sum(p.numel() for p in model.parameters()),
           "batch": batch, "video": [frames, size, size, 3], "channels": channels, "mults": list(mults),
           "torch": torch.__version__, "video_diffusion_pytorch": getattr(video_diffusion_pytorch, "__version__", "0.7.0"),
           "threads": torch.get_num_threads(), "python": platform.python_version(),
           "load_average_start": os.getloadavg()}
    x = torch.rand(batch, 3, frames, size, size)
    if phase == "eval":
        from torch.utils.flop_counter import FlopCounterMode

        model.eval()
        t = torch.randint(0, 1000, (batch,)).float()
        with torch.inference_mode():
            counter = FlopCounterMode(display=False)
            with counter:
                model(x * 2 - 1, t)
            out["flops_fwd_per_example"] = counter.get_total_flops() / batch
            times = [_timed(lambda: model(x * 2 - 1, t)) for _ in range(repeats + 1)][1:]
        out["eval_s"] = statistics.median(w for w, _ in times)
        out["eval_cpu_s"] = statistics.median(c for _, c in times)
        out["eval_times_s"] = [w for w, _ in times]
    elif phase == "train":
        model.train()
        diffusion = GaussianDiffusion(model, image_size=size, num_frames=frames, channels=3,
                                      timesteps=1000, loss_type="l2")
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss = diffusion(x)
            loss.backward()
            optimizer.step()
            return loss

        times = [_timed(step) for _ in range(repeats + 1)][1:]
        out["train_step_s"] = statistics.median(w for w, _ in times)
        out["train_step_cpu_s"] = statistics.median(c for _, c in times)
        out["train_times_s"] = [w for w, _ in times]
    else:
        raise ValueError(f"phase={phase!r}: expected 'eval' or 'train'")
    out["peak_rss_mb"] = _peak_rss_mb()
    out["load_average_end"] = os.getloadavg()
    return out


def main(argv=None) -> None:
    """Parse the shape, run one phase, print its JSON on one line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--phase", choices=("eval", "train"), required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--channels", type=int, required=True)
    p.add_argument("--mults", type=int, nargs="+", required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    a = p.parse_args(argv)
    print(json.dumps(run(a.phase, a.batch, a.frames, a.size, a.channels, tuple(a.mults),
                         a.repeats, a.threads)), flush=True)


if __name__ == "__main__":
    main()
