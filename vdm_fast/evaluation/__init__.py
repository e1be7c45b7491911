"""`python cli.py evaluate`: FVD and Inception Score of a trained model (Sec. 4.1-4.3) with the
real I3D network, over the protocols of the paper adapted to the model's frame count.

| protocol | what is generated | paper |
|---|---|---|
| `unconditional` | N videos of one block (F frames) from noise (with c of N data clips if conditional) | Sec. 4.1, Tables 4-5 |
| `bair` | given the first frame of N data clips, the rest (1 -> 15 at 16 frames) | Sec. 4.2, Table 2 |
| `kinetics` | given the first 5 frames of N data clips, the rest (5 -> 11 at 16 frames) | Sec. 4.2, Table 3 |
| `extend` | N videos of `extend_factor` x F frames: one block from noise, then block-autoregressive extension | Sec. 4.3.3, Table 6 |

**Frame counts.** The video-prediction protocols are defined on 16-frame videos. A model of F
frames runs them on min(F, 16) frames by default (an 8-frame model: 1 -> 7 and 5 -> 3); with
`length=16` the prediction is carried on block by block to the paper's 16 frames. The
adaptation is written into the results (`protocol.note`).

**I3D and short or grey videos.** I3D takes RGB videos of at least 9 frames. Grey videos
(Moving MNIST) are repeated over the 3 channels. Videos of fewer than 9 frames are, by default,
*temporally upsampled by frame repetition* (each frame shown k = ceil(9/T) times: 8 frames ->
16), for the generated and the real set alike, and the output says so; `short_clips="refuse"`
raises instead. FVDs of repeated videos are comparable only with each other.

**Pairing (Sec. 4.2).** The conditioning frames and captions/labels come from the same N data
clips that form the real set, the lowest-bias choice the paper describes for Kinetics-600. The
data are clips of the model's Moving MNIST training distribution drawn from the MNIST *test*
digits with their own seed (`vdm_fast.inputs.moving_mnist_data`, the clips `--clip` of the generation
commands reads), so not training clips. The condition c of each clip (one-hot label or caption
tokens) is encoded as training encodes it (`vdm_fast.inputs.ConditionEncoder`).

**Spread.** Besides the FVD of all N against all N, the N pairs are cut into `fvd_splits`
disjoint parts and the FVD of each is reported as mean ± std (FVD is biased upwards at small N,
so the split FVDs are larger than the full one; compare like with like). IS: mean ± std over
`is_splits` splits, as in `vdm_fast.metrics.inception_score`.

The feature network is a parameter (`embed`): the default is the I3D of `vdm_fast.metrics`;
tests pass a cheap stub.

Modules: `protocols` (what is generated, what I3D is shown), `settings` (`EvalSettings`, what to
evaluate, checked before any work), `run` (`evaluate`: generate, embed, FVD and IS with their
spread), `report` (the table and the JSON), `command` (`python cli.py evaluate`).
"""

from .command import Evaluate, main
from .protocols import (
    I3D_MIN_FRAMES,
    PAPER_PREDICTION,
    PROTOCOLS,
    SHORT_CLIPS,
    EvaluationError,
    Protocol,
    i3d_input,
    plan_protocol,
    repeat_factor,
)
from .report import format_table, json_default, write_results
from .run import (
    Embed,
    conditions,
    default_embed,
    evaluate,
    fvd_with_spread,
    generate,
    inception_score_with_spread,
    reference_clips,
)
from .settings import EvalSettings

__all__ = [
    "I3D_MIN_FRAMES", "PAPER_PREDICTION", "PROTOCOLS", "SHORT_CLIPS", "Embed", "EvalSettings", "Evaluate",
    "EvaluationError", "Protocol", "conditions", "default_embed", "evaluate", "format_table", "fvd_with_spread",
    "generate", "i3d_input", "inception_score_with_spread", "json_default", "main", "plan_protocol",
    "reference_clips", "repeat_factor", "write_results",
]
