"""Tiny Moving MNIST checkpoints for the command and script tests (no training), and the check
that a command refuses bad input in one line (`one_line_error`).

`tiny_config` is the tiny preset cut to one level without attention — the condition enters
through the embedding, which is all these tests exercise, and the compiles stay short — with 4
frames of 8x8x1 and 2 sampling steps unless `unet` says otherwise. `tiny_checkpoint` saves its
initial parameters as training saves them, with a Moving MNIST data record (one 4-px digit).
`noise` adds N(0, noise²) to every parameter: `vdm_ref.network.init` zeroes the output
convolution, so an unperturbed model predicts ε̂ = 0 whatever its input and condition.
"""

import dataclasses

import numpy as np

from vdm_ref import configs as C
from vdm_ref.support.checkpoint import save_checkpoint


def tiny_config(conditioning: str = "none", *, guidance_weight: float = 0.0, **unet) -> C.Config:
    cfg = C.get_preset("tiny")
    unet = {"frames": 4, "image_size": 8, "in_channels": 1, "out_channels": 1, "channel_mult": (1,),
            "attn_resolutions": (), "conditioning": conditioning, **unet}
    return dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, **unet),
                               diffusion=dataclasses.replace(cfg.diffusion, sampling_steps=2,
                                                             guidance_weight=guidance_weight))


def tiny_checkpoint(root, conditioning: str = "none", *, noise: float = 0.0, guidance_weight: float = 0.0,
                    **unet) -> str:
    import jax

    from vdm_ref.network import init

    cfg = tiny_config(conditioning, guidance_weight=guidance_weight, **unet)
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map(
        lambda v: np.asarray(v + noise * rng.standard_normal(np.shape(v)), np.float32), init(cfg.unet, 0))
    save_checkpoint(root, 1, {"params": params, "ema": params},
                    {"config": C.config_to_dict(cfg),
                     "data": {"dataset": "moving_mnist", "mnist_digit_size": 4, "mnist_digits": 1}})
    return str(root)


def one_line_error(argv) -> str:
    """The message `cli.main(argv)` must exit with: one line starting "error:" (no traceback)."""
    import pytest

    import cli

    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    message = e.value.code
    assert isinstance(message, str) and "\n" not in message and message.startswith("error:"), message
    return message
