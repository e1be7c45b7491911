"""`python cli.py train`: the training command (tyro turns these field docstrings into --help).

Every Appendix A hyperparameter of the preset can be overridden by a flag; flags left unset
keep the preset's value. See docs/training.md.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Literal, Optional

from vdm_ref.train import Recipe

from .loop import DataOptions, TrainError, TrainOptions, resolve_config, train


@dataclasses.dataclass
class Train:
    """Train a video diffusion model (Eq. 2) on Moving MNIST or a folder of your videos.

    Writes a run directory with checkpoints (atomic, the last --keep-checkpoints kept), a JSONL
    metrics log, a loss plot and EMA sample videos. Refuses to reuse a run directory unless
    --resume (continue exactly where it stopped) or --overwrite is given.
    """

    preset: str = "mnist-small"
    """Named configuration: an Appendix A model (ucf101, bair, kinetics600, t2v-small, t2v-large,
    t2v-large-fs4, t2v-sr-9x128) or a small one (tiny, mnist-small, mnist-small-text)."""
    backend: Literal["fast", "ref"] = "fast"
    """fast: the compiled, sharded step; ref: jax.grad over the readable reference (slow, tiny presets)."""
    run_dir: Optional[str] = None
    """Run directory (default runs/<preset>)."""
    resume: bool = False
    """Continue the run in --run-dir from its newest checkpoint (same preset and flags required)."""
    overwrite: bool = False
    """Delete an existing --run-dir and start over."""
    steps: Optional[int] = None
    """Total training steps (default: the preset's train_steps)."""
    minutes: Optional[float] = None
    """Also stop after this many minutes of training (a checkpoint and samples are written)."""
    seed: int = 0
    """Seed of the initialisation, the batch order and every training draw."""

    # ---- data
    data_dir: Optional[str] = None
    """A folder of your videos (mp4/webm/gif/... or folders of frames; see docs/data.md). Default:
    the embedded Moving MNIST, generated offline."""
    mnist_digits: int = 1
    """Moving MNIST: digits per clip."""
    mnist_digit_size: int = 20
    """Moving MNIST: digit side in pixels."""
    mnist_speed: tuple[float, float] = (1.0, 3.0)
    """Moving MNIST: range of digit speeds, pixels per frame."""
    mnist_videos: int = 100_000
    """Moving MNIST: number of distinct clips (generated lazily)."""

    # ---- Appendix A: optimiser and training (None = the preset's value)
    batch_size: Optional[int] = None
    """[Batch size] global batch (split over devices)."""
    learning_rate: Optional[float] = None
    """[Learning rate] η of Adam after warm-up."""
    beta1: Optional[float] = None
    """[Optimizer: Adam β1]."""
    beta2: Optional[float] = None
    """[Optimizer: Adam β2]."""
    weight_decay: Optional[float] = None
    """[Weight decay] decoupled (AdamW), on weights of rank >= 2."""
    ema_decay: Optional[float] = None
    """[EMA] decay of the parameter average used for sampling."""
    image_frames: Optional[int] = None
    """[Joint training independent images per video] N image frames appended to each clip (Sec. 4.3.1)."""
    cond_dropout: Optional[float] = None
    """Probability of training on the null condition c = 0 (classifier-free guidance, Eq. 6)."""
    flip: Optional[bool] = None
    """[Data augmentation: left-right flips] (video folders)."""

    # ---- recipe (beyond Appendix A)
    warmup_steps: Optional[int] = None
    """Linear learning-rate warm-up over the first updates (preset: 200, mnist-small 100)."""
    grad_clip: Optional[float] = None
    """Clip gradients to this global norm (0: off; preset: 1.0)."""
    ema_warmup: Optional[bool] = None
    """EMA decay min(d, (1+n)/(10+n)) at update n, so short runs are not stuck near the initialisation (preset: on)."""
    adam_eps: Optional[float] = None
    """ε of Adam's denominator (preset: 1e-8)."""

    # ---- Appendix A: network
    channels: Optional[int] = None
    """[Base channels]."""
    channel_mult: Optional[tuple[int, ...]] = None
    """[Channel multipliers] M1 .. MK (K levels; the spatial size must divide by 2**(K-1))."""
    num_res_blocks: Optional[int] = None
    """[Blocks per resolution] N."""
    attn_resolutions: Optional[tuple[int, ...]] = None
    """[Attention resolutions] levels (by spatial size) with spatial + temporal attention."""
    head_dim: Optional[int] = None
    """[Attention head dimension]."""
    emb_dim: Optional[int] = None
    """[Conditioning embedding dimension]."""
    emb_mlp_layers: Optional[int] = None
    """[Conditioning embedding MLP layers]."""
    dropout: Optional[float] = None
    """[Dropout] in the residual blocks."""
    frames: Optional[int] = None
    """[Video resolution] frames per clip."""
    image_size: Optional[int] = None
    """[Video resolution] height = width."""
    frameskip: Optional[int] = None
    """[Video resolution: frameskip]."""
    target: Optional[Literal["eps", "v"]] = None
    """[Prediction target] ε or v."""
    conditioning: Optional[Literal["none", "class", "text"]] = None
    """none, class (Moving MNIST digit labels) or text (captions, MiniLM token embeddings)."""
    num_classes: Optional[int] = None
    """Classes for class conditioning (10 for Moving MNIST)."""
    norm_groups: Optional[int] = None
    """GroupNorm groups."""
    patch_size: Optional[int] = None
    """Space-to-depth factor p: the U-Net runs on p x p pixel patches (image_size / p at the top level; 1: off)."""
    in_channels: Optional[int] = None
    """Video channels in (1 for Moving MNIST, 3 for RGB)."""
    out_channels: Optional[int] = None
    """Network output channels (= in_channels)."""

    # ---- Appendix A: diffusion and sampling (used for the preview samples)
    logsnr_min: Optional[float] = None
    """[Noise schedule log SNR range] lower end."""
    logsnr_max: Optional[float] = None
    """[Noise schedule log SNR range] upper end."""
    gamma: Optional[float] = None
    """[Sampling log-variance interpolation] γ of Eq. 4."""

    # ---- logging, samples, checkpoints
    log_every: int = 25
    """Steps per metrics.jsonl line."""
    checkpoint_every: int = 500
    """Steps between checkpoints (one is always written at the end)."""
    keep_checkpoints: int = 3
    """Checkpoints kept (oldest deleted)."""
    sample_every: int = 0
    """Steps between EMA sample videos (0: only at the end)."""
    num_samples: int = 8
    """Videos per sample grid."""
    sample_steps: int = 64
    """Ancestral sampling steps for the preview samples."""
    progress: bool = True
    """Show the progress bar."""

    # ---- devices
    data_parallel: int = -1
    """Mesh 'data' axis size (-1: all devices not used by --fsdp)."""
    fsdp: int = 1
    """Mesh 'fsdp' axis size: shard parameters, EMA and Adam state over this many devices."""
    coordinator_address: Optional[str] = None
    """Multi-host: host:port of process 0 (else $VDM_COORDINATOR_ADDRESS; VDM_DISTRIBUTED=auto lets JAX detect the cluster)."""
    num_processes: Optional[int] = None
    """Multi-host: number of processes (else $VDM_NUM_PROCESSES)."""
    process_id: Optional[int] = None
    """Multi-host: this process's index (else $VDM_PROCESS_ID)."""
    skip_memory_check: bool = False
    """Do not refuse batches estimated not to fit in memory."""
    bf16: bool = False
    """Compute the network in bfloat16 (parameters, optimizer and EMA stay float32); for GPUs/TPUs."""
    remat: bool = False
    """Rematerialise every U-Net block in the backward pass (less memory, ~30% more compute)."""

    def options(self) -> TrainOptions:
        """The resolved TrainOptions (TrainError on a conflict)."""
        overrides = {name: getattr(self, name) for name in (
            "batch_size", "learning_rate", "beta1", "beta2", "weight_decay", "ema_decay", "image_frames",
            "cond_dropout", "flip", "channels", "channel_mult", "num_res_blocks", "attn_resolutions",
            "head_dim", "emb_dim", "emb_mlp_layers", "dropout", "frames", "image_size", "frameskip",
            "target", "conditioning", "num_classes", "norm_groups", "in_channels", "out_channels",
            "patch_size", "logsnr_min", "logsnr_max", "gamma", "warmup_steps", "grad_clip",
            "adam_eps", "ema_warmup")}
        overrides["train_steps"] = self.steps
        if self.conditioning == "class" and self.num_classes is None and self.data_dir is None:
            overrides["num_classes"] = 10
        config = resolve_config(self.preset, overrides)
        if self.data_dir is not None and config.dataset == "moving_mnist" and any(
                getattr(self, f) != d.default for f, d in _MNIST_DEFAULTS.items()):
            raise TrainError("--mnist-* options describe the embedded Moving MNIST; they conflict with "
                             f"--data-dir {self.data_dir}")
        recipe = Recipe.of(config.train)  # config.train validated the recipe (check_recipe)
        data = DataOptions(self.data_dir, self.mnist_videos, self.mnist_digits, self.mnist_digit_size,
                           tuple(self.mnist_speed), self.seed)
        for name in ("log_every", "checkpoint_every", "keep_checkpoints", "sample_steps"):
            if getattr(self, name) < 1:
                raise TrainError(f"--{name.replace('_', '-')} {getattr(self, name)}: expected >= 1")
        return TrainOptions(
            config=config, recipe=recipe, data=data, run_dir=self.run_dir or f"runs/{self.preset}",
            backend=self.backend, seed=self.seed, resume=self.resume, overwrite=self.overwrite,
            minutes=self.minutes, log_every=self.log_every, checkpoint_every=self.checkpoint_every,
            keep_checkpoints=self.keep_checkpoints, sample_every=self.sample_every,
            num_samples=self.num_samples, sample_steps=self.sample_steps,
            data_parallel=self.data_parallel, fsdp=self.fsdp,
            skip_memory_check=self.skip_memory_check, progress=self.progress,
            compute_dtype="bfloat16" if self.bf16 else None, remat=self.remat)

    def run(self) -> dict:
        """Resolve the options, join a multi-host run if asked, train; print a one-line summary."""
        from .sharding import initialize_distributed

        try:
            opts = self.options()
            initialize_distributed(self.coordinator_address, self.num_processes, self.process_id)
            summary = train(opts)
        except TrainError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        s = summary.get("samples") or {}
        print(f"trained steps {summary['start_step']} -> {summary['step']} in {summary['seconds']:.0f} s; "
              f"checkpoint {summary['checkpoint']}; samples {s.get('gif')} (coherence "
              f"{s.get('coherence', float('nan')):.3f})")
        return summary


_MNIST_DEFAULTS = {f.name: f for f in dataclasses.fields(Train) if f.name.startswith("mnist_")}


def main(argv=None) -> None:
    """`python -m vdm_fast.training.command ...` (the same as `python cli.py train ...`)."""
    import tyro

    tyro.cli(Train, args=argv).run()


if __name__ == "__main__":
    main()
