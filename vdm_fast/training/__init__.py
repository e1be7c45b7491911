"""Training of video diffusion models: the compiled sharded step, the loop, the CLI command.

- `step`: optax AdamW + EMA train step under one `jax.jit`, sharded by `vdm_fast.sharding`;
  `make_step` also wraps the reference step (--backend ref).
- `options`: `resolve_config` (a preset plus flag overrides) and `TrainOptions`.
- `data`: the dataset, the condition inputs of clips (`encode_conditions`), batches, prefetching.
- `memory`: the per-device memory estimate, checked before compiling.
- `rundir`: the run directory's checks (never deletes what is not ours), marker, plots, samples.
- `loop`: `train(TrainOptions)`; `errors`: `TrainError`, `NonFiniteLossError`.
- `command`: the `Train` dataclass behind `python cli.py train`.
See docs/training.md.
"""

from .command import Train
from .data import DataOptions
from .errors import NonFiniteLossError, TrainError
from .loop import train
from .options import TrainOptions, resolve_config

__all__ = ["DataOptions", "NonFiniteLossError", "Train", "TrainError", "TrainOptions", "resolve_config", "train"]
