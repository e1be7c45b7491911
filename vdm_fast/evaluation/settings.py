"""What to evaluate: `EvalSettings`, the one dataclass of the evaluation's settings. The command
`Evaluate` (command.py) is these settings plus the checkpoint and the outputs, so each flag of
`python cli.py evaluate` is declared once, here or there."""

from __future__ import annotations

import dataclasses
from typing import Literal

from vdm_fast.inputs import InputError, check_flags

from .protocols import PROTOCOLS, SHORT_CLIPS, EvaluationError, Protocol, plan_protocol, repeat_factor


@dataclasses.dataclass
class EvalSettings:
    """What to evaluate (every field is a flag of `python cli.py evaluate`)."""

    protocols: tuple[Literal["unconditional", "bair", "kinetics", "extend"], ...] = ("unconditional", "bair", "kinetics")
    """Protocols to run (the docstring of vdm_fast.evaluation)."""
    num_samples: int = 32
    """N: generated videos per protocol and method, and real clips compared with them."""
    methods: tuple[Literal["reconstruction", "replacement"], ...] = ("reconstruction",)
    """Conditioning methods for bair / kinetics / extend (Sec. 3.1); each is a row."""
    w_r: float | None = None
    """Reconstruction guidance weight w_r (Eq. 7; default: the config's, else 5)."""
    guidance_weight: float | None = None
    """Classifier-free guidance weight w (Eq. 6) for class/text models (c from the real clips)."""
    steps: int | None = None
    """Sampling steps (default: the config's sampling_steps)."""
    gamma: float | None = None
    """γ of the ancestral sampler (Eq. 4; default: the config's)."""
    corrector: bool | None = None
    """Predictor-corrector sampler (Eq. 5; default: the config's)."""
    length: int | None = None
    """Frames per video of unconditional/bair/kinetics (default: one block; prediction: min(block, 16))."""
    extend_factor: int = 4
    """Length of the 'extend' protocol in blocks (Table 6: 4)."""
    seed: int = 0
    """Seed of the sampling."""
    data_seed: int = 1234
    """Seed of the real Moving MNIST clips (MNIST test digits)."""
    batch_size: int = 8
    """Videos sampled at once."""
    is_splits: int = 1
    """Inception Score splits (the paper: 1 and 10)."""
    fvd_splits: int = 4
    """Disjoint splits of the N pairs for the FVD spread (mean ± std)."""
    short_clips: Literal["repeat", "refuse"] = "repeat"
    """Videos under 9 frames: repeat each frame ceil(9/T) times for I3D (said in the output), or refuse."""
    resize: Literal["antialias", "tf1"] = "antialias"
    """Resize to 224x224 for I3D ('tf1': the original FVD code's)."""
    i3d_batch_size: int = 8
    """Videos per I3D call."""
    coherence: bool = True
    """Also report the Moving MNIST boundary coherence of block-extended videos."""

    def settings(self) -> EvalSettings:
        """These settings alone (a subclass's extra fields dropped): what the results record."""
        return EvalSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(EvalSettings)})

    def check(self, block: int) -> list[Protocol]:
        """Every setting checked and each protocol planned, before any work (EvaluationError)."""
        from vdm_fast.generation import METHODS

        try:
            check_flags(dataclasses.asdict(self.settings()), finite=("w_r", "guidance_weight", "gamma"),
                        minimums={"steps": 2, "w_r": 0, "guidance_weight": 0, "data_seed": 0, "length": 1},
                        unit_interval=("gamma",))
        except InputError as e:
            raise EvaluationError(str(e)) from e
        if not self.protocols:
            raise EvaluationError("no protocol given: expected some of " + ", ".join(PROTOCOLS))
        if self.num_samples < 2:
            raise EvaluationError(f"num_samples={self.num_samples}: FVD needs at least 2 videos per set")
        if not 1 <= self.fvd_splits <= self.num_samples // 2:
            raise EvaluationError(f"fvd_splits={self.fvd_splits}: expected 1 .. num_samples/2 = "
                                  f"{self.num_samples // 2} (each split needs >= 2 videos)")
        if not 1 <= self.is_splits <= self.num_samples:
            raise EvaluationError(f"is_splits={self.is_splits}: expected 1 .. num_samples = {self.num_samples}")
        if self.batch_size < 1 or self.i3d_batch_size < 1:
            raise EvaluationError(f"batch sizes must be >= 1, got {self.batch_size}, {self.i3d_batch_size}")
        if not self.methods:
            raise EvaluationError(f"no conditioning method given: expected some of {METHODS}")
        for m in self.methods:
            if m not in METHODS:
                raise EvaluationError(f"method {m!r}: expected one of {METHODS}")
        if self.short_clips not in SHORT_CLIPS:
            raise EvaluationError(f"short_clips={self.short_clips!r}: expected one of {SHORT_CLIPS}")
        if self.resize not in ("antialias", "tf1"):
            raise EvaluationError(f"resize={self.resize!r}: expected 'antialias' or 'tf1'")
        plans = []
        for name in dict.fromkeys(self.protocols):
            p = plan_protocol(name, block, length=None if name == "extend" else self.length,
                              extend_factor=self.extend_factor)
            repeat_factor(p.length, self.short_clips)  # refuse short clips now, not after sampling
            plans.append(p)
        return plans
