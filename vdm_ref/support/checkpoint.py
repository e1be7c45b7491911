"""Training checkpoints: atomic, self-describing, backend-free (NumPy + JSON).

A run directory holds `checkpoints/step_00001234/`, each with

    arrays.npz   every array of the training state, flattened to '/'-joined keys:
                 params/<shared layout ...>, ema/<...>, opt/mu/<...>, opt/nu/<...>, opt/count
    meta.json    {"format", "step", "seed", "data_position", "rng", "config", "recipe",
                  "backend", "saved_at", "arrays_sha256", ...}

The parameters use the layout shared by both backends (`vdm_ref.network.init`), so a model
trained with one backend samples with the other; the Adam moments are stored in the same layout
(`opt/mu`, `opt/nu`) with their update count, not as one library's optimizer object.

Writing is atomic: everything goes to a hidden temporary directory in `checkpoints/`, is flushed
to disk, and the directory is then renamed to its final name (`os.replace`, atomic on POSIX).
A process killed at any moment leaves either the previous checkpoints or the new one complete,
never a half-written `step_*` directory; stale temporaries are removed by the next save. The
last `keep` checkpoints are kept.

Reading is verified: meta.json carries the SHA-256 of arrays.npz, checked on load, and any
damage (a truncated or bit-flipped archive, bad JSON) raises `CheckpointError` with one line
naming the file and what to do. Checkpoints written before the checksum existed load unverified
(their archive's own CRCs still catch most damage). `latest_intact_checkpoint` finds the newest
checkpoint that loads, naming the damaged ones it passed over.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .assets import sha256_file

__mirror__ = False

FORMAT = "vdm-checkpoint-1"
CHECKPOINT_DIR = "checkpoints"
_STEP_DIR = re.compile(r"^step_(\d{8,})$")


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not belong to this run (names what differs)."""


# ---------------------------------------------------------------------------------------------
# Nested dict <-> flat '/'-joined keys


def flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """{"a": {"b": x}} -> {"a/b": x}; leaves converted to NumPy arrays."""
    out: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        if "/" in str(key):
            raise ValueError(f"key {key!r} contains '/': cannot flatten it unambiguously")
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "/"))
        else:
            out[name] = np.asarray(value)
    return out


def unflatten(flat: dict[str, np.ndarray]) -> dict:
    """Inverse of `flatten`: {"a/b": x} -> {"a": {"b": x}}."""
    out: dict = {}
    for name, value in flat.items():
        node = out
        *parents, leaf = name.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


# ---------------------------------------------------------------------------------------------
# Save / find / load


def checkpoint_dir(run_dir: str | Path) -> Path:
    """`<run_dir>/checkpoints`."""
    return Path(run_dir) / CHECKPOINT_DIR


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run as (step, path), oldest first (temporaries are ignored)."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and (p / "meta.json").is_file() and (p / "arrays.npz").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(run_dir: str | Path, step: int, arrays: dict, meta: dict, *, keep: int = 3) -> Path:
    """Write `arrays` (a nested dict of arrays) and `meta` (JSON-able) as checkpoint `step`.

    Atomic (temporary directory, fsync, rename); afterwards only the newest `keep` checkpoints
    and no stale temporaries remain. Returns the checkpoint's path.
    """
    if keep < 1:
        raise ValueError(f"keep={keep}: expected at least 1 checkpoint to keep")
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{int(step):08d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp_", dir=root))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a checkpoint is meant to be shared
    try:
        with open(tmp / "arrays.npz", "wb") as f:
            np.savez(f, **flatten(arrays))
            f.flush()
            os.fsync(f.fileno())
        meta = dict(meta, format=FORMAT, step=int(step), saved_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
                    arrays_sha256=sha256_file(tmp / "arrays.npz"))
        with open(tmp / "meta.json", "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        if final.exists():  # re-saving a step (e.g. after a resume): replace it whole
            old = root / f".old_{final.name}_{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for _, old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for p in root.iterdir():  # temporaries of processes killed mid-save
        if p.name.startswith((".tmp_", ".old_")) and p != tmp:
            shutil.rmtree(p, ignore_errors=True)
    return final


#: What a damaged archive raises inside numpy / zipfile / zlib.
_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, UnicodeDecodeError)


def load_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """(arrays as a nested dict of NumPy arrays, meta) of a checkpoint directory, verified.

    `path` may be a checkpoint directory or a run directory (its newest checkpoint is loaded).
    Raises CheckpointError (a ValueError, one line naming the file and what to do) when nothing
    complete is there, when meta.json is not readable JSON, when arrays.npz does not match the
    SHA-256 recorded in meta.json, or when the archive cannot be read (truncated, bad CRC, ...).
    """
    path = Path(path)
    if not (path / "meta.json").is_file():
        latest = latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(f"no checkpoint at {path}: expected a checkpoint directory "
                                  f"(with meta.json and arrays.npz) or a run directory with "
                                  f"{CHECKPOINT_DIR}/step_*")
        path = latest
    todo = ("use another checkpoint (`train --resume` falls back to the newest intact one; "
            f"remove {path} yourself once you no longer need it)")
    try:
        meta = json.loads((path / "meta.json").read_text())
        if not isinstance(meta, dict):
            raise ValueError(f"expected a JSON object, found {type(meta).__name__}")
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path / 'meta.json'} is unreadable ({_one_line(e)}): {todo}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    expected = meta.get("arrays_sha256")
    try:
        if expected is not None and sha256_file(path / "arrays.npz") != expected:
            raise CheckpointError(f"checkpoint {path / 'arrays.npz'} is corrupt (its SHA-256 does not match "
                                  f"meta.json): {todo}")
        with np.load(path / "arrays.npz", allow_pickle=False) as z:
            arrays = unflatten({k: z[k] for k in z.files})
    except CheckpointError:
        raise
    except _READ_ERRORS as e:
        raise CheckpointError(f"checkpoint {path / 'arrays.npz'} is corrupt or unreadable "
                              f"({_one_line(e)}): {todo}") from None
    return arrays, meta


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text[:160]}"


def latest_intact_checkpoint(run_dir: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint of a run that loads and verifies, and the newer ones passed over.

    Returns (path or None, [(damaged path, the one-line CheckpointError message), ...] newest
    first). Each candidate is loaded in full (`load_checkpoint`), so 'intact' means usable.
    """
    skipped = []
    for _, path in reversed(list_checkpoints(run_dir)):
        try:
            load_checkpoint(path)
        except CheckpointError as e:
            skipped.append((path, str(e)))
            continue
        return path, skipped
    return None, skipped


# ---------------------------------------------------------------------------------------------
# Compatibility


def config_differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Human-readable 'key: saved -> current' lines where two (nested) config dicts differ."""
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, name + ".")
        elif _jsonable(a) != _jsonable(b):
            out.append(f"{name}: {a!r} (checkpoint) vs {b!r} (now)")
    return out


def _jsonable(x):
    return json.loads(json.dumps(x))


def check_shapes(saved: dict, expected: dict, what: str) -> None:
    """Raise CheckpointError listing arrays missing, unexpected or of another shape.

    saved: nested dict of arrays; expected: nested dict of shapes (tuples) or arrays.
    """
    fs, fe = flatten_shapes(saved), flatten_shapes(expected)
    problems = [f"missing {k}" for k in sorted(set(fe) - set(fs))]
    problems += [f"unexpected {k}" for k in sorted(set(fs) - set(fe))]
    problems += [f"{k}: shape {fs[k]} in the checkpoint, {fe[k]} expected"
                 for k in sorted(set(fs) & set(fe)) if tuple(fs[k]) != tuple(fe[k])]
    if problems:
        more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
        raise CheckpointError(f"{what} do not match this model: " + "; ".join(problems[:8]) + more)


def warm_start(params: dict, path: str | Path) -> tuple[dict, list[str], list[str]]:
    """`params` with every array the checkpoint at `path` also holds replaced by the checkpoint's
    (its EMA parameters when it has them, else its training parameters); the names of the arrays
    that kept their fresh initialisation (new in this model, e.g. a text-embedding layer); and the
    names of the checkpoint's arrays this model has no place for (e.g. attention at a level that
    has none here).

    The network's weights do not depend on the video's resolution or length (convolutions,
    attention, relative positions clipped at a maximum distance), so a model of another frame size
    or frameskip starts from them too. Raises CheckpointError when an array both hold has another
    shape, or when the checkpoint and the model share no array at all.
    """
    arrays, _ = load_checkpoint(path)
    source = arrays.get("ema") or arrays.get("params")
    if not source:
        raise CheckpointError(f"{path} holds no parameters (neither 'ema' nor 'params')")
    saved, fresh = flatten(source), flatten(params)
    wrong = [f"{k}: {np.shape(saved[k])} in the checkpoint, {np.shape(fresh[k])} here"
             for k in sorted(set(saved) & set(fresh)) if np.shape(saved[k]) != np.shape(fresh[k])]
    if wrong:
        more = f" (and {len(wrong) - 4} more)" if len(wrong) > 4 else ""
        raise CheckpointError(f"{path}: parameters of another shape than this model's: "
                              + "; ".join(wrong[:4]) + more + " (same channels and levels needed)")
    if not set(saved) & set(fresh):
        raise CheckpointError(f"{path}: shares no parameter with this model")
    merged = {k: np.asarray(saved.get(k, v), dtype=np.asarray(v).dtype) for k, v in fresh.items()}
    return unflatten(merged), sorted(set(fresh) - set(saved)), sorted(set(saved) - set(fresh))


def flatten_shapes(tree: dict, prefix: str = "") -> dict[str, tuple]:
    """{"a": {"b": x}} -> {"a/b": shape of x} (x an array or a shape tuple)."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_shapes(value, name + "/"))
        else:
            out[name] = tuple(value) if isinstance(value, tuple) else tuple(np.shape(value))
    return out


def export_for_sampling(src: str | Path, dst: str | Path, *, note: str = "",
                        sampling: dict | None = None) -> Path:
    """Write a small sampling checkpoint: the EMA parameters and the metadata of `src`.

    src: a checkpoint or run directory; dst: the new checkpoint directory (meta.json +
    arrays.npz, readable by `load_checkpoint` and the generation commands). The optimizer state
    and the raw parameters are left out (a third of the size); the result cannot be resumed.
    sampling: new values for fields the config's "diffusion" section already has (e.g. the
    default guidance weight a shipped text model samples with); the old ones are recorded in
    the metadata under "export_sampling_was".
    """
    arrays, meta = load_checkpoint(src)
    if "ema" not in arrays:
        raise CheckpointError(f"{src} holds no EMA parameters to export (found {sorted(arrays)})")
    if sampling:
        diffusion = dict(meta.get("config", {}).get("diffusion", {}))
        unknown = sorted(set(sampling) - set(diffusion))
        if unknown:
            raise CheckpointError(f"sampling={sampling}: {unknown} not in the config's diffusion section "
                                  f"({sorted(diffusion)})")
        meta = dict(meta, config=dict(meta["config"], diffusion={**diffusion, **sampling}),
                    export_sampling_was={k: diffusion[k] for k in sampling})
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp_export_", dir=dst.parent))
    os.chmod(tmp, 0o755)
    try:
        with open(tmp / "arrays.npz", "wb") as f:
            np.savez(f, **flatten({"ema": arrays["ema"]}))
        meta = dict(meta, exported_from=str(src), export="EMA parameters only (no optimizer state)",
                    export_note=note, arrays_sha256=sha256_file(tmp / "arrays.npz"))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dst
