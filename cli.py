"""vdm command line: `python cli.py SUBCOMMAND --help`.

Thin by design (DESIGN.md): parse, pick the backend, call library functions, report.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Literal

import tyro
import tyro.extras

from vdm_fast.evaluation import Evaluate
from vdm_fast.generation.commands import Cascade, Extend, Interpolate, Predict, Sample, Upsample
from vdm_fast.training.command import Train

Backend = Literal["fast", "ref"]


@dataclasses.dataclass
class Demo:
    """Sample the exact Gaussian oracle with every sampler and compare conditional samplers.

    Shows the paper's diffusion maths working end to end with no training: the ancestral sampler
    (Eq. 4) at several γ and the predictor-corrector sampler (Eq. 4 + 5) reproduce the oracle's
    covariance, and reconstruction guidance (Eq. 7) beats replacement for video extension.
    """

    samples: int = 1000
    """Samples per sampler run."""
    steps: int = 64
    """Sampling steps (uniform grid from t = 1 to 0)."""
    seed: int = 0
    """Random seed of every draw."""

    def run(self) -> None:
        import numpy as np

        from vdm_ref import conditioning as C
        from vdm_ref import metrics, oracle, samplers, schedule

        if self.samples < 2 or self.steps < 2:
            raise SystemExit(f"--samples and --steps must be at least 2, got {self.samples}, {self.steps}")
        rng = np.random.default_rng(self.seed)
        o = oracle.GaussianVideoOracle(shape=(8, 4, 4, 1), rho_t=0.9, rho_s=0.6)
        grid = schedule.logsnr_grid(self.steps)
        shape = (self.samples,) + o.shape
        mu, cov = o.mean.reshape(-1), o.cov

        def w2(x, m=mu, c=cov):
            f = x.reshape(self.samples, -1)
            return float(metrics.gaussian_w2(f.mean(0), np.cov(f.T), m, c))

        print(f"Oracle N(mu, C) over 8x4x4x1 videos; {self.samples} samples, {self.steps} steps, seed {self.seed}")
        print("\nUnconditional samplers, W2 to the oracle (lower is better):")
        exact = o.sample(rng.standard_normal(shape))
        print(f"  exact oracle samples (Monte-Carlo floor)  W2 = {w2(exact):.3f}")
        for name, pc, gamma in (("ancestral gamma=0", False, 0.0), ("ancestral gamma=0.3", False, 0.3),
                                ("ancestral gamma=1", False, 1.0), ("predictor-corrector", True, 0.0)):
            t0 = time.perf_counter()
            noise = rng.standard_normal((self.steps - 1,) + shape)
            z = rng.standard_normal(shape)
            if pc:
                x = samplers.sample_pc(o.denoise, z, grid, noise, rng.standard_normal(noise.shape), gamma=gamma)
            else:
                x = samplers.sample_ancestral(o.denoise, z, grid, noise, gamma=gamma)
            print(f"  {name:<40} W2 = {w2(x):.3f}   ({time.perf_counter() - t0:.1f} s)")

        print("\nExtension 2 -> 8 frames, W2 to the exact conditional p(x^b | x^a):")
        x_true = o.sample(rng.standard_normal((1,) + o.shape))
        mask = C.frame_mask(8, C.prefix_frames(8, 2))
        obs = C.Observation(x=np.broadcast_to(x_true, shape), mask=mask)
        m_exact, c_exact = o.conditional(x_true, np.broadcast_to(mask[0].astype(bool), o.shape))
        for name, w_r in (("replacement", 0.0), ("reconstruction guidance w_r=5", 5.0)):
            x = C.sample_conditional(o.denoise_vjp, rng.standard_normal(shape), grid,
                                     rng.standard_normal((self.steps - 1,) + shape),
                                     rng.standard_normal((self.steps,) + shape), obs, w_r=w_r)
            print(f"  {name:<40} W2 = {w2(x, m_exact.reshape(-1), c_exact):.3f}")


@dataclasses.dataclass
class Presets:
    """Print every preset (Appendix A and the small CPU ones) with its parameter count and FLOPs
    per network evaluation."""

    def run(self) -> None:
        from vdm_ref.support import presets

        presets.main()


@dataclasses.dataclass
class Bench:
    """Benchmark the fast backend: network evaluation, sampler step, compile time, achieved
    FLOP/s against a matmul peak measured in the same run, peak memory, fast/reference speedup."""

    presets: tuple[str, ...] = ("mnist-small", "bair")
    """Presets to measure (`python cli.py presets` lists them)."""
    batch: int = 1
    """Batch size of the network evaluation."""
    repeats: int = 5
    """Timed repeats after warm-up; medians are reported."""
    reference: bool = True
    """Also time the NumPy reference network (skipped above --reference-max-gflop)."""
    reference_max_gflop: float = 50.0
    """Largest network (GFLOP per evaluation) the slow reference is timed on."""
    json_path: str | None = None
    """Also write the figures as JSON here."""

    def run(self) -> None:
        from benchmarks.bench import check_arguments
        from benchmarks.bench import main as bench
        from vdm_fast.inputs import check_writable, usage_errors

        with usage_errors(ValueError):  # before the first measurement
            check_arguments(self.presets, self.batch, self.repeats)
            if self.json_path:
                check_writable(self.json_path, "--json-path")
        bench(presets=self.presets, batch=self.batch, repeats=self.repeats, reference=self.reference,
              reference_max_gflop=self.reference_max_gflop, json_path=self.json_path)


COMMANDS = {
    "demo": Demo,
    "train": Train,
    "presets": Presets,
    "sample": Sample,
    "predict": Predict,
    "extend": Extend,
    "interpolate": Interpolate,
    "upsample": Upsample,
    "cascade": Cascade,
    "evaluate": Evaluate,
    "bench": Bench,
}


def main(argv: list[str] | None = None) -> None:
    command = tyro.extras.subcommand_cli_from_dict(COMMANDS, args=argv, description=__doc__)
    command.run()


if __name__ == "__main__":
    main(sys.argv[1:])
