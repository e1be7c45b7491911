"""The caption-embedding cache: a dataset's distinct captions embedded once by the text encoder
(Sec. 4.3) and kept on disk, for both backends (`vdm_ref.text_encoder.embed_captions_cached` and
its `vdm_fast` twin call `cached_caption_embeddings` with their own encoder).

Backend-free: both backends import it (DESIGN.md, Layering).
"""

from __future__ import annotations

__mirror__ = False

import functools
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .assets import default_cache_dir
from .minilm import MODEL_SHA256, tokenize

__all__ = ["CaptionEmbeddings", "cached_caption_embeddings", "caption_cache_key"]


@dataclass(frozen=True)
class CaptionEmbeddings:
    """Token embeddings of a set of distinct captions, all padded to one length L.

    **Fields:** `captions` (U distinct strings), `embeddings` float32 `[U, L, D]` (memory-mapped
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
        """`(embeddings float32 [B, L, D], mask bool [B, L])` of a batch of (embedded) captions."""
        rows = self.rows(list(captions))
        return np.asarray(self.embeddings[rows]), np.asarray(self.mask[rows])


def caption_cache_key(captions: Sequence[str], max_length: int | None, backend: str) -> str:
    """Hash naming a cache entry: model weights, backend, max_length and the distinct captions."""
    payload = json.dumps({"model": MODEL_SHA256, "backend": backend, "max_length": max_length,
                          "captions": sorted(set(captions))}, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def _encode_all(token_ids, mask, encode, batch_size, pad_batches) -> np.ndarray:
    """encode() over the rows in batches -> float32 [n, L, D]; see `cached_caption_embeddings`."""
    n = token_ids.shape[0]
    out = None
    for start in range(0, n, batch_size):
        ids, m = token_ids[start : start + batch_size], mask[start : start + batch_size]
        fill = batch_size - ids.shape[0] if pad_batches else 0
        if fill:  # pad the last batch with copies of the first caption so the shape never changes
            ids = np.concatenate([ids, np.repeat(token_ids[:1], fill, axis=0)])
            m = np.concatenate([m, np.repeat(mask[:1], fill, axis=0)])
        emb = np.asarray(encode(ids, m), np.float32)[: batch_size - fill]
        if out is None:
            out = np.zeros((n,) + emb.shape[1:], np.float32)
        out[start : start + batch_size] = emb
    return out


def cached_caption_embeddings(captions: Sequence[str], encode: Callable, *, backend: str,
                              cache_dir: str | Path | None = None, max_length: int | None = None,
                              batch_size: int = 64, pad_batches: bool = False) -> CaptionEmbeddings:
    """Embed the distinct captions once and keep them on disk (both backends call this).

    `encode(token_ids [b, L], mask [b, L]) -> [b, L, D]`. Captions are tokenised together (one
    length L for all), encoded in batches of `batch_size` (with `pad_batches` the last batch is
    filled up with copies, so a jitted encoder compiles once) and stored as float32 in
    `<cache_dir>/text/<key>/` (`embeddings.npy`, `mask.npy`, `captions.json`; cache_dir defaults
    to `assets.default_cache_dir()`); a later call with the same captions, max_length and backend
    loads them memory-mapped instead.
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
    out = _encode_all(token_ids, mask, encode, batch_size, pad_batches)
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
