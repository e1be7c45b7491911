"""Video files, frame grids and the user's video folder: round trips, bad files skipped, clear errors."""

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from vdm_ref.support.data import (
    SkippedVideoWarning,
    VideoFolder,
    VideoReadError,
    frame_grid,
    from_uint8,
    read_frame_grid,
    read_video,
    resize_center_crop,
    to_uint8,
    write_frame_grid,
    write_video,
)
from vdm_ref.support.data import folder as folder_module


def smooth_video(t=12, h=32, w=32, seed=0):
    """A smooth moving colour pattern in [-1, 1], [T, H, W, 3] (what codecs are built for)."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, 3)
    tt, yy, xx = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
    channels = [np.sin((xx + 2 * tt) / 6.0 + phase[0]), np.cos((yy - tt) / 7.0 + phase[1]),
                np.sin((xx + yy) / 9.0 + tt / 4.0 + phase[2])]
    return (0.8 * np.stack(channels, -1)).astype(np.float32)


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def test_uint8_conversion_round_trips():
    u = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8(from_uint8(u)), u)
    assert to_uint8(np.array([-1.0, 1.0, 5.0])).tolist() == [0, 255, 255]


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_lossy_video_round_trip(tmp_path, suffix):
    video = smooth_video()
    path = write_video(tmp_path / f"v{suffix}", video, fps=8)
    back = read_video(path)
    assert back.shape == (12, 32, 32, 3) and back.dtype == np.uint8
    # tolerance: constant-quality H.264 / VP9 at CRF 17 on smooth content is above 30 dB; the mean
    # error is dominated by yuv420p's half-resolution chroma on this colourful 32x32 pattern
    assert psnr(back, to_uint8(video)) > 30.0
    assert np.abs(back.astype(int) - to_uint8(video)).mean() < 6.0


def test_mp4_of_odd_size_is_padded_to_even(tmp_path):
    video = smooth_video(t=4, h=15, w=17)
    back = read_video(write_video(tmp_path / "odd.mp4", video))
    assert back.shape == (4, 16, 18, 3)
    assert psnr(back[:, :15, :17], to_uint8(video)) > 30.0


def test_grayscale_gif_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(1)
    video = rng.integers(0, 256, size=(6, 20, 24, 1), dtype=np.uint8)
    video[3] = video[2]  # identical consecutive frames are merged by the encoder: must come back
    back = read_video(write_video(tmp_path / "v.gif", video, fps=10))
    np.testing.assert_array_equal(back, np.repeat(video, 3, axis=-1))


def test_colour_gif_round_trip_within_palette_error(tmp_path):
    video = smooth_video(t=5)
    back = read_video(write_video(tmp_path / "c.gif", video))
    assert back.shape == (5, 32, 32, 3)
    assert psnr(back, to_uint8(video)) > 25.0  # 256-colour palette quantisation


def test_png_frame_grid_round_trip_is_exact(tmp_path):
    videos = smooth_video(t=5, seed=2)[None].repeat(3, axis=0)
    grid = frame_grid(videos, padding=2)
    assert grid.shape == (3 * 34 + 2, 5 * 34 + 2, 3)
    back = read_frame_grid(write_frame_grid(tmp_path / "g.png", videos), rows=3, cols=5)
    np.testing.assert_array_equal(back, to_uint8(videos))
    gray = to_uint8(videos[..., :1])
    np.testing.assert_array_equal(read_frame_grid(write_frame_grid(tmp_path / "h.png", gray), rows=3, cols=5), gray)


def test_image_sequence_folder_reads_in_natural_order(tmp_path):
    frames = to_uint8(smooth_video(t=11))
    for t, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / f"frame{t}.png")  # frame10 must come after frame9
    np.testing.assert_array_equal(read_video(tmp_path), frames)


def test_unreadable_inputs_raise_errors_naming_the_file(tmp_path):
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x01garbage" * 50)
    (tmp_path / "empty.gif").write_bytes(b"")
    (tmp_path / "notes.xyz").write_text("hello")
    for name in ("corrupt.mp4", "empty.gif", "notes.xyz", "missing.mp4"):
        with pytest.raises(VideoReadError, match=name):
            read_video(tmp_path / name)


def test_resize_center_crop_keeps_the_centre_square():
    frame = np.zeros((40, 80, 3), np.uint8)
    frame[:, 20:60] = 200  # the centred 40x40 square
    out = resize_center_crop(frame, 20)
    assert out.shape == (20, 20, 3)
    assert np.abs(out.astype(int) - 200).max() <= 1
    assert resize_center_crop(frame, 20, channels=1).shape == (20, 20, 1)


def make_folder(root):
    """A folder with 3 usable videos (mp4 + sidecar, gif in a subfolder + jsonl, image sequence)
    and 3 unusable ones (corrupt, empty, too short)."""
    root.mkdir()
    write_video(root / "a.mp4", smooth_video(t=12, seed=1))
    (root / "a.txt").write_text("a red ball rolls\n")
    (root / "sub").mkdir()
    write_video(root / "sub" / "b.gif", smooth_video(t=10, h=32, w=48, seed=2))
    (root / "seq").mkdir()
    for t, f in enumerate(to_uint8(smooth_video(t=9, seed=3))):
        Image.fromarray(f).save(root / "seq" / f"{t:03d}.png")
    (root / "captions.jsonl").write_text(json.dumps({"file": "sub/b.gif", "caption": "waves"}) + "\n")
    (root / "corrupt.mp4").write_bytes(b"\x00garbage" * 100)
    (root / "empty.webm").write_bytes(b"")
    write_video(root / "short.gif", smooth_video(t=2, seed=4))
    return root


def test_folder_dataset_skips_bad_files_and_reads_captions(tmp_path):
    root = make_folder(tmp_path / "videos")
    with pytest.warns(SkippedVideoWarning) as record:
        ds = VideoFolder(root, num_frames=4, resolution=16, frameskip=2, cache_dir=tmp_path / "cache")
    skipped = sorted(p.name for p, _ in ds.skipped)
    assert skipped == ["corrupt.mp4", "empty.webm", "short.gif"]
    assert len(record) == 3 and all(any(n in str(w.message) for n in skipped) for w in record)
    assert [v.path.name for v in ds.videos] == ["a.mp4", "seq", "b.gif"]
    # span = (4 - 1) * 2 + 1 = 7 frames, stride 8: one clip from each of 12, 9 and 10 frames
    assert len(ds) == 3 and ds.captions == ["a red ball rolls", "", "waves"]
    assert ds.clip(0).shape == (4, 16, 16, 3) and ds.frame(0, 1).shape == (16, 16, 3)
    np.testing.assert_array_equal(ds.frame(1, 3), ds.clip(1)[3])
    # clip 1 is the PNG sequence, frames 0, 2, 4, 6, downsized 32 -> 16 (exact source, no codec)
    src = to_uint8(smooth_video(t=9, seed=3))[0:7:2]
    expected = np.stack([resize_center_crop(f, 16) for f in src])
    np.testing.assert_array_equal(to_uint8(ds.clip(1)), expected)


def test_folder_decodes_once_into_the_cache(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "videos")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedVideoWarning)
        first = VideoFolder(root, num_frames=3, resolution=16, cache_dir=tmp_path / "cache")
        decoded = []

        def refuse(path, *args, **kwargs):
            decoded.append(path.name)
            raise VideoReadError("not decoding twice")

        monkeypatch.setattr(folder_module, "decode_to_cache", refuse)
        second = VideoFolder(root, num_frames=3, resolution=16, cache_dir=tmp_path / "cache")
    assert sorted(decoded) == ["corrupt.mp4", "empty.webm"]  # only the files that never made it in
    assert len(list((tmp_path / "cache" / "videos").glob("*.npy"))) == 4  # a, seq, b, short
    np.testing.assert_array_equal(first.batch(np.arange(len(first))), second.batch(np.arange(len(second))))
    assert isinstance(np.load(first.videos[0].cache, mmap_mode="r"), np.memmap)


def test_flip_augmentation_mirrors_whole_clips(tmp_path):
    root = make_folder(tmp_path / "videos")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedVideoWarning)
        ds = VideoFolder(root, num_frames=4, resolution=16, cache_dir=tmp_path / "cache")
    rng = np.random.default_rng(0)
    flips = []
    for _ in range(10):
        batch = ds.batch([0], rng)[0]
        clip = ds.clip(0)
        assert np.array_equal(batch, clip) or np.array_equal(batch, clip[:, :, ::-1])
        flips.append(not np.array_equal(batch, clip))
    assert 0 < sum(flips) < 10
    assert np.array_equal(ds.batch([0]), ds.clip(0)[None])  # no rng, no augmentation


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "readme.md").write_text("hi")
    with pytest.raises(ValueError, match=r"no usable clip in video folder .*nothing.*found 0 video"):
        VideoFolder(tmp_path / "nothing", num_frames=4, resolution=16, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="does not exist"):
        VideoFolder(tmp_path / "absent", num_frames=4, resolution=16)


def test_folder_of_only_bad_files_lists_what_was_skipped(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "x.mp4").write_bytes(b"nope")
    write_video(root / "short.gif", smooth_video(t=2))
    with pytest.warns(SkippedVideoWarning):
        with pytest.raises(ValueError, match=r"found 2 video") as error:
            VideoFolder(root, num_frames=8, resolution=16, cache_dir=tmp_path / "cache")
    assert "x.mp4: could not decode" in str(error.value)
    assert "short.gif: 2 frames, but a clip needs 8" in str(error.value)
