"""`python cli.py train`: the training command (tyro turns these field docstrings into --help).

Every Appendix A hyperparameter of the preset can be overridden by a flag; flags left unset
keep the preset's value (--help shows the default preset's). `--resume` reads the run's saved
configuration (run.json), so no flag needs retyping; a flag given explicitly that differs from
the saved run is refused by name (only --steps and --gamma may change). See docs/training.md.
"""

import dataclasses
import sys
from pathlib import Path
from typing import Annotated, Literal, Optional

import tyro

from vdm_ref.configs import config_from_dict, get_preset
from vdm_ref.train import Recipe

from .data import DataOptions
from .errors import TrainError
from .loop import train
from .options import (DIFFUSION_FIELDS, TRAIN_FIELDS, UNET_FIELDS, TrainOptions, flag, fmt_value, resolve_config,
                      same_value, section)
from .rundir import saved_run

DEFAULT_PRESET = "mnist-small"
#: Config fields a resumed run may change: how long it trains, and γ of the preview sampler.
CHANGEABLE_ON_RESUME = ("train_steps", "gamma")
#: Options a resumed run takes from its run.json unless given again.
RUN_OPTIONS = ("backend", "log_every", "checkpoint_every", "keep_checkpoints", "sample_every", "num_samples",
               "sample_steps", "data_parallel", "fsdp", "skip_memory_check", "remat")


def _hint(text: str, metavar: str):
    """tyro's help suffix and metavar for a flag whose default is described, not None."""
    return tyro.conf.arg(help_behavior_hint=text, metavar=metavar)


def _from_preset(field: str):
    """tyro's help suffix for a preset-override flag: the value the default preset gives it."""
    config = get_preset(DEFAULT_PRESET)
    value = getattr(getattr(config, section(field)), field)
    shown = fmt_value(value)
    metavar = {bool: "{True,False}", int: "INT", float: "FLOAT", str: "STR"}.get(type(value), "[INT [INT ...]]")
    metavar = {"target": "{eps,v}", "conditioning": "{none,class,text}", "lr_decay": "{none,cosine}",
               "loss_weight": "{none,min_snr}", "temporal_position": "{bias,shaw}"}.get(field, metavar)
    return tyro.conf.arg(help_behavior_hint=f"(default: from --preset; {DEFAULT_PRESET}: {shown or '(none)'})",
                         metavar=metavar)


@dataclasses.dataclass
class Train:
    """Train a video diffusion model (Eq. 2) on Moving MNIST or a folder of your videos.

    Writes a run directory with checkpoints (atomic, the last --keep-checkpoints kept), a JSONL
    metrics log, a loss plot and EMA sample videos. Refuses to reuse a run directory unless
    --resume (continue exactly where it stopped) or --overwrite is given.
    """

    preset: str = DEFAULT_PRESET
    """Named configuration: an Appendix A model (ucf101, bair, kinetics600, t2v-small, t2v-large,
    t2v-large-fs4, t2v-sr-9x128) or a small one (tiny, mnist-small, mnist-small-text)."""
    backend: Literal["fast", "ref"] = "fast"
    """fast: the compiled, sharded step; ref: jax.grad over the readable reference (slow, tiny presets)."""
    run_dir: Annotated[Optional[str], _hint('(default: runs/<preset>)', 'STR')] = None
    """Run directory."""
    resume: bool = False
    """Continue the run in --run-dir from its newest intact checkpoint, with its saved configuration."""
    overwrite: bool = False
    """Delete an existing --run-dir and start over (only a run directory of this program, never other files)."""
    init_from: Annotated[Optional[str], _hint('(default: a fresh initialisation)', 'PATH')] = None
    """Start a new run from this checkpoint's parameters (EMA if it has them): fine-tune a shipped model,
    add text conditioning to it, or train it at another frame size or frameskip. Arrays it lacks start fresh."""
    steps: Annotated[Optional[int], _from_preset("train_steps")] = None
    """Total training steps (the preset's train_steps unless given)."""
    minutes: Annotated[Optional[float], _hint('(default: no time limit)', 'FLOAT')] = None
    """Also stop after this many minutes of training (> 0; a checkpoint and samples are written)."""
    seed: int = 0
    """Seed of the initialisation, the batch order and every training draw."""

    # ---- data
    data_dir: Annotated[Optional[str], _hint('(default: the embedded Moving MNIST)', 'STR')] = None
    """A folder of your videos (mp4/webm/gif/... or folders of frames; see docs/data.md); else the
    embedded Moving MNIST, generated offline."""
    mnist_digits: int = 1
    """Moving MNIST: digits per clip."""
    mnist_digit_size: int = 20
    """Moving MNIST: digit side in pixels."""
    mnist_speed: tuple[float, float] = (1.0, 3.0)
    """Moving MNIST: range of digit speeds, pixels per frame."""
    mnist_videos: int = 100_000
    """Moving MNIST: number of distinct clips (generated lazily)."""

    # ---- Appendix A: optimiser and training (None = the preset's value)
    batch_size: Annotated[Optional[int], _from_preset('batch_size')] = None
    """[Batch size] global batch (split over devices)."""
    learning_rate: Annotated[Optional[float], _from_preset('learning_rate')] = None
    """[Learning rate] η of Adam after warm-up."""
    beta1: Annotated[Optional[float], _from_preset('beta1')] = None
    """[Optimizer: Adam β1]."""
    beta2: Annotated[Optional[float], _from_preset('beta2')] = None
    """[Optimizer: Adam β2]."""
    weight_decay: Annotated[Optional[float], _from_preset('weight_decay')] = None
    """[Weight decay] decoupled (AdamW), on weights of rank >= 2."""
    ema_decay: Annotated[Optional[float], _from_preset('ema_decay')] = None
    """[EMA] decay of the parameter average used for sampling."""
    image_frames: Annotated[Optional[int], _from_preset('image_frames')] = None
    """[Joint training independent images per video] N image frames appended to each clip (Sec. 4.3.1)."""
    cond_dropout: Annotated[Optional[float], _from_preset('cond_dropout')] = None
    """Probability of training on the null condition c = 0 (classifier-free guidance, Eq. 6)."""
    flip: Annotated[Optional[bool], _from_preset('flip')] = None
    """[Data augmentation: left-right flips] (video folders)."""

    # ---- recipe (beyond Appendix A)
    warmup_steps: Annotated[Optional[int], _from_preset('warmup_steps')] = None
    """Linear learning-rate warm-up over the first updates."""
    grad_clip: Annotated[Optional[float], _from_preset('grad_clip')] = None
    """Clip gradients to this global norm (0: off)."""
    ema_warmup: Annotated[Optional[bool], _from_preset('ema_warmup')] = None
    """EMA decay min(d, (1+n)/(10+n)) at update n, so short runs are not stuck near the initialisation."""
    adam_eps: Annotated[Optional[float], _from_preset('adam_eps')] = None
    """ε of Adam's denominator."""
    lr_decay: Annotated[Optional[Literal["none", "cosine"]], _from_preset('lr_decay')] = None
    """After the warm-up: none (constant η) or cosine (η·(1 + cos πp)/2, p the fraction of --steps or of
    --minutes done, whichever is larger: the rate reaches 0 when the run ends)."""
    loss_weight: Annotated[Optional[Literal["none", "min_snr"]], _from_preset('loss_weight')] = None
    """Weighting of Eq. 2 over log-SNR: none (the target's own: ε or v MSE) or min_snr (Min-SNR-γ,
    Hang et al. 2023: w(λ) = min(SNR, γ))."""
    min_snr_gamma: Annotated[Optional[float], _from_preset('min_snr_gamma')] = None
    """γ of --loss-weight min_snr."""

    # ---- Appendix A: network
    channels: Annotated[Optional[int], _from_preset('channels')] = None
    """[Base channels]."""
    channel_mult: Annotated[Optional[tuple[int, ...]], _from_preset('channel_mult')] = None
    """[Channel multipliers] M1 .. MK (K levels; the spatial size must divide by 2**(K-1))."""
    num_res_blocks: Annotated[Optional[int], _from_preset('num_res_blocks')] = None
    """[Blocks per resolution] N."""
    attn_resolutions: Annotated[Optional[tuple[int, ...]], _from_preset('attn_resolutions')] = None
    """[Attention resolutions] levels (by spatial size) with spatial + temporal attention."""
    head_dim: Annotated[Optional[int], _from_preset('head_dim')] = None
    """[Attention head dimension]."""
    temporal_position: Annotated[Optional[Literal["bias", "shaw"]], _from_preset('temporal_position')] = None
    """Relative positions in temporal attention: bias (a learned scalar per head and distance, T5-style)
    or shaw (Sec. 3's [45], Shaw et al. 2018: learned vectors added to keys and values)."""
    emb_dim: Annotated[Optional[int], _from_preset('emb_dim')] = None
    """[Conditioning embedding dimension]."""
    emb_mlp_layers: Annotated[Optional[int], _from_preset('emb_mlp_layers')] = None
    """[Conditioning embedding MLP layers]."""
    dropout: Annotated[Optional[float], _from_preset('dropout')] = None
    """[Dropout] in the residual blocks."""
    frames: Annotated[Optional[int], _from_preset('frames')] = None
    """[Video resolution] frames per clip."""
    image_size: Annotated[Optional[int], _from_preset('image_size')] = None
    """[Video resolution] height = width."""
    frameskip: Annotated[Optional[int], _from_preset('frameskip')] = None
    """[Video resolution: frameskip]."""
    target: Annotated[Optional[Literal["eps", "v"]], _from_preset('target')] = None
    """[Prediction target] ε or v."""
    conditioning: Annotated[Optional[Literal["none", "class", "text"]], _from_preset('conditioning')] = None
    """none, class (Moving MNIST digit labels) or text (captions, MiniLM token embeddings)."""
    num_classes: Annotated[Optional[int], _from_preset('num_classes')] = None
    """Classes for class conditioning (10 for Moving MNIST)."""
    norm_groups: Annotated[Optional[int], _from_preset('norm_groups')] = None
    """GroupNorm groups."""
    patch_size: Annotated[Optional[int], _from_preset('patch_size')] = None
    """Space-to-depth factor p: the U-Net runs on p x p pixel patches (image_size / p at the top level; 1: off)."""
    in_channels: Annotated[Optional[int], _from_preset('in_channels')] = None
    """Video channels in (3 for RGB; on the embedded Moving MNIST 1 unless given)."""
    out_channels: Annotated[Optional[int], _from_preset('out_channels')] = None
    """Network output channels (= in_channels)."""

    # ---- Appendix A: diffusion and sampling (used for the preview samples)
    logsnr_min: Annotated[Optional[float], _from_preset('logsnr_min')] = None
    """[Noise schedule log SNR range] lower end."""
    logsnr_max: Annotated[Optional[float], _from_preset('logsnr_max')] = None
    """[Noise schedule log SNR range] upper end."""
    logsnr_shift: Annotated[Optional[float], _from_preset('logsnr_shift')] = None
    """Shift s of the cosine schedule, λ(t) + s inside the same range (not in the paper; > 0: less noise; used in training and sampling)."""
    gamma: Annotated[Optional[float], _from_preset('gamma')] = None
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
    cpu_devices: Annotated[Optional[int], _hint("(default: 1, its computations on the calling thread)",
                                                "INT")] = None
    """CPU only: split the host's cores into this many JAX devices, each training its share of the
    batch side by side (data parallel). One device (the default) runs each step on the training
    loop's thread, whose heap keeps the step's buffers (`vdm_fast.cpu_host`). No effect on a GPU
    or TPU."""
    batch_parts: Annotated[Optional[int], _hint("(default: 2 on one CPU device of a host with >= 2 cores "
                                                "and an even batch, else 1)", "INT")] = None
    """Evaluate each device's batch as this many independent parts in one compiled step, which a
    CPU runs side by side on its cores (the same update; with dropout each part draws its own
    masks)."""
    coordinator_address: Annotated[Optional[str], _hint('(default: $VDM_COORDINATOR_ADDRESS)', 'STR')] = None
    """Multi-host: host:port of process 0 (else $VDM_COORDINATOR_ADDRESS; VDM_DISTRIBUTED=auto lets JAX detect the cluster)."""
    num_processes: Annotated[Optional[int], _hint('(default: $VDM_NUM_PROCESSES)', 'INT')] = None
    """Multi-host: number of processes (else $VDM_NUM_PROCESSES)."""
    process_id: Annotated[Optional[int], _hint('(default: $VDM_PROCESS_ID)', 'INT')] = None
    """Multi-host: this process's index (else $VDM_PROCESS_ID)."""
    skip_memory_check: bool = False
    """Do not refuse batches estimated not to fit in memory."""
    bf16: bool = False
    """Compute the network in bfloat16 (parameters, optimizer and EMA stay float32); for GPUs/TPUs."""
    remat: bool = False
    """Rematerialise every U-Net block in the backward pass: only block inputs are kept (a 16x64x64
    step with attention everywhere: 6.75 GB instead of 10.2), for up to ~20% more compute."""

    def overrides(self) -> dict:
        """The preset overrides the user gave: config field -> value (the steps are 'train_steps')."""
        names = sorted((UNET_FIELDS | DIFFUSION_FIELDS | TRAIN_FIELDS) & set(_FIELDS))
        given = {name: getattr(self, name) for name in names if getattr(self, name) is not None}
        if self.steps is not None:
            given["train_steps"] = self.steps
        return given

    def options(self) -> TrainOptions:
        """The resolved TrainOptions (TrainError, one line naming the flag, on a conflict)."""
        if self.minutes is not None and not self.minutes > 0:
            raise TrainError(f"--minutes {self.minutes}: expected a positive number of minutes (omit it to "
                             "train for --steps)")
        for name in ("log_every", "checkpoint_every", "keep_checkpoints", "sample_steps"):
            if getattr(self, name) < 1:
                raise TrainError(f"--{name.replace('_', '-')} {getattr(self, name)}: expected >= 1")
        if self.batch_parts is not None and self.batch_parts < 1:
            raise TrainError(f"--batch-parts {self.batch_parts}: expected >= 1")
        for name in ("sample_every", "num_samples"):
            if getattr(self, name) < 0:
                raise TrainError(f"--{name.replace('_', '-')} {getattr(self, name)}: expected >= 0")
        if self.data_dir is not None and any(getattr(self, f) != _FIELDS[f].default for f in _MNIST):
            raise TrainError("--mnist-* options describe the embedded Moving MNIST; they conflict with "
                             f"--data-dir {self.data_dir}")
        run_dir = self.run_dir or f"runs/{self.preset}"
        saved = saved_run(Path(run_dir)) if self.resume else None
        config, seed, data = self._resumed(*saved) if saved else self._new_run()
        run = {name: getattr(self, name) for name in RUN_OPTIONS}
        run["compute_dtype"] = "bfloat16" if self.bf16 else None
        if saved:  # the run's own cadence and numerics, unless given again
            kept = saved[0].get("options") or {}
            for name in RUN_OPTIONS:
                if name in kept and getattr(self, name) == _FIELDS[name].default:
                    run[name] = kept[name]
            if "compute_dtype" in kept and not self.bf16:
                run["compute_dtype"] = kept["compute_dtype"]
        return TrainOptions(config=config, recipe=Recipe.of(config.train), data=data, run_dir=run_dir,
                            seed=seed, resume=self.resume, overwrite=self.overwrite, minutes=self.minutes,
                            init_from=self.init_from, batch_parts=self.batch_parts,
                            progress=self.progress, **run)

    def _new_run(self):
        """(config, seed, data) of a new run: the preset with the flags applied. On the embedded
        Moving MNIST (grayscale) the channels are 1 unless a channel flag is given."""
        overrides = self.overrides()
        if self.conditioning == "class" and self.num_classes is None and self.data_dir is None:
            overrides["num_classes"] = 10
        if self.data_dir is None and self.in_channels is None and self.out_channels is None:
            overrides.update(in_channels=1, out_channels=1)
        config = resolve_config(self.preset, overrides)
        data = DataOptions(self.data_dir, self.mnist_videos, self.mnist_digits, self.mnist_digit_size,
                           tuple(self.mnist_speed), self.seed)
        return config, self.seed, data

    def _resumed(self, saved: dict, source: Path):
        """(config, seed, data) of the run saved in `source` (run.json, or a checkpoint's
        meta.json), with --steps / --gamma applied; TrainError naming every explicit flag that
        differs from the saved run."""
        try:
            config = config_from_dict(saved["config"])
            data = saved.get("data") or {}
            data = DataOptions(**dict(data, mnist_speed=tuple(data.get("mnist_speed", (1.0, 3.0)))))
        except (TypeError, ValueError) as e:
            raise TrainError(f"--resume: cannot read the saved configuration in {source} ({e}); "
                             "start a new --run-dir") from None
        seed = int(saved.get("seed", self.seed))
        conflicts = []
        if self.preset != DEFAULT_PRESET and self.preset != config.name:
            conflicts.append(f"--preset {self.preset} (the run: {config.name})")
        changes = {}
        for field, value in self.overrides().items():
            was = getattr(getattr(config, section(field)), field)
            if same_value(value, was):
                continue
            if field in CHANGEABLE_ON_RESUME:
                changes.setdefault(section(field), {})[field] = value
            else:
                conflicts.append(f"{flag(field)} {fmt_value(value)} (the run: {fmt_value(was)})")
        if self.seed != _FIELDS["seed"].default and self.seed != seed:
            conflicts.append(f"--seed {self.seed} (the run: {seed})")
        if self.data_dir is not None and (data.data_dir is None
                                          or Path(self.data_dir).resolve() != Path(data.data_dir).resolve()):
            conflicts.append(f"--data-dir {self.data_dir} (the run: {data.data_dir or 'the embedded Moving MNIST'})")
        for f in _MNIST:
            mine, was = getattr(self, f), getattr(data, f)
            if mine != _FIELDS[f].default and not same_value(mine, was):
                conflicts.append(f"--{f.replace('_', '-')} {fmt_value(mine)} (the run: {fmt_value(was)})")
        if conflicts:
            raise TrainError(f"--resume continues the run saved in {source}, but "
                             f"{'; '.join(conflicts)}: drop these flags to continue the run, or start a new "
                             "--run-dir")
        try:
            parts = {name: dataclasses.replace(getattr(config, name), **kw) for name, kw in changes.items()}
        except ValueError as e:
            given = " ".join(f"{flag(k)} {v}" for kw in changes.values() for k, v in kw.items())
            raise TrainError(f"--resume with {given}: {e}") from None
        return dataclasses.replace(config, **parts), seed, data

    def _split_cpu(self, opts: TrainOptions) -> None:
        """Before JAX starts: split the CPU into --cpu-devices devices or, for one (the default,
        on one process without an XLA_FLAGS device count), run its computations on this thread
        (`cpu_host.run_on_calling_thread`)."""
        from vdm_fast import cpu_host
        from vdm_fast import sharding as shd

        if opts.backend != "fast":
            return
        try:
            multi_host = shd.distributed_requested(self.coordinator_address, self.num_processes)
        except ValueError:  # a malformed $VDM_NUM_PROCESSES: initialize_distributed names it next
            multi_host = True
        try:
            if not multi_host or self.cpu_devices is not None:
                cpu_host.prepare(self.cpu_devices)
        except ValueError as e:
            raise TrainError(f"--cpu-devices: {e}") from None

    def run(self) -> dict:
        """Resolve the options, join a multi-host run if asked, train; print a one-line summary."""
        from vdm_fast.sharding import initialize_distributed

        try:
            opts = self.options()
            self._split_cpu(opts)
            try:
                initialize_distributed(self.coordinator_address, self.num_processes, self.process_id)
            except ValueError as e:
                raise TrainError(f"--num-processes/--coordinator-address: {e}") from None
            summary = train(opts)
        except TrainError as e:
            print("error: " + " ".join(str(e).split()), file=sys.stderr)  # one line, whatever the cause
            raise SystemExit(2) from None
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the loop checkpointed the state first
            run_dir = self.run_dir or f"runs/{self.preset}"
            print(f"interrupted: once training has started the state at the interruption is checkpointed in "
                  f"{run_dir}/checkpoints; continue with python cli.py train --run-dir {run_dir} --resume",
                  file=sys.stderr)
            raise SystemExit(130) from None
        s = summary.get("samples") or {}
        coherence = f" (coherence {s['coherence']:.3f})" if "coherence" in s else ""
        print(f"trained steps {summary['start_step']} -> {summary['step']} in {summary['seconds']:.0f} s; "
              f"checkpoint {summary['checkpoint']}; samples {s.get('gif')}{coherence}")
        return summary


_FIELDS = {f.name: f for f in dataclasses.fields(Train)}
_MNIST = [name for name in _FIELDS if name.startswith("mnist_")]


def main(argv=None) -> None:
    """`python -m vdm_fast.training.command ...` (the same as `python cli.py train ...`)."""
    import tyro

    tyro.cli(Train, args=argv).run()


if __name__ == "__main__":
    main()
