"""Generation over a trained model (Sec. 3.1, 4): sample, predict, extend, interpolate, upsample,
and the Fig. 2 cascade, on the compiled samplers of `vdm_fast` (or the reference ones).

    from vdm_fast.generation import load_model, extend, SamplerOptions
    model = load_model("checkpoints/mnist-small")
    video = extend(model, 0, first_block, 64, options=SamplerOptions(method="reconstruction", w_r=5))

- `model`: `Model`, `load_model` (checkpoint -> network of either backend), `open_model` (the
  same for a command's --checkpoint flag, errors as one line), `model_from_params`.
- `engine`: `SamplerOptions`, the window planner and the host-side timeline loop (one block on the
  device at a time).
- `tasks`: the tasks themselves.
- `commands`: the CLI commands `sample`, `predict`, `extend`, `interpolate`, `upsample`, on the
  shared flags and `run()` of `options` and the files of `outputs`; their inputs (checkpoints,
  videos, dataset clips, the condition c) come from `vdm_fast.inputs`.
See docs/generation.md.
"""

from .engine import (
    METHODS,
    SamplerOptions,
    Timeline,
    Window,
    guided_denoiser,
    iter_windows,
    plan_windows,
    run_timeline,
    sample_window,
)
from vdm_fast.inputs import null_condition, one_hot
from vdm_ref.configs import config_from_dict

from .model import BACKENDS, Denoiser, Model, RefNetwork, describe, load_model, model_from_params, open_model
from .tasks import cascade, extend, interpolate, predict, sample, upsample

__all__ = [
    "BACKENDS", "Denoiser", "METHODS", "Model", "RefNetwork", "SamplerOptions", "Timeline", "Window",
    "cascade", "config_from_dict", "describe", "extend", "guided_denoiser", "interpolate", "iter_windows",
    "load_model", "model_from_params", "null_condition", "one_hot", "open_model", "plan_windows", "predict",
    "run_timeline", "sample", "sample_window", "upsample",
]
