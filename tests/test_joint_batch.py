"""Joint image-video batches (Sec. 4.3.1): N independent frames from other videos appended to each clip."""

import numpy as np
import pytest

from vdm_ref.support.data import ArrayDataset, MovingMNIST, append_image_frames, frame_kind_mask, joint_batch

T, H = 4, 3


def labelled_dataset(num_videos=6, flip=False):
    """Every pixel of frame t of video v holds the code v + t / 10 (its provenance), with a
    left-right ramp (so flips are visible) in the last column: [V, T, H, H, 1]."""
    v, t = np.meshgrid(np.arange(num_videos), np.arange(T), indexing="ij")
    codes = (v + t / 10.0)[:, :, None, None, None] * np.ones((1, 1, H, H, 1))
    codes[:, :, :, -1] += 100.0  # the right-most column is marked
    return ArrayDataset(codes, flip=flip)


def provenance(frame):
    """(video, frame) that a frame of `labelled_dataset` came from, and whether it was flipped."""
    flipped = frame[0, 0, 0] > 50
    code = frame[0, 1, 0]
    return int(np.floor(code + 1e-9)), int(round((code % 1) * 10)), bool(flipped)


def test_mask_marks_the_appended_frames():
    mask = frame_kind_mask(2, 3, 2)
    assert mask.dtype == bool and mask.tolist() == [[False, False, False, True, True]] * 2
    batch, is_image = append_image_frames(np.zeros((2, 3, 5, 5, 1)), np.ones((2, 2, 5, 5, 1)))
    assert batch.shape == (2, 5, 5, 5, 1) and np.array_equal(is_image, mask)
    with pytest.raises(ValueError, match="must agree"):
        append_image_frames(np.zeros((2, 3, 5, 5, 1)), np.ones((2, 2, 4, 5, 1)))


def test_video_frames_are_the_clip_and_image_frames_come_from_other_videos():
    ds = labelled_dataset()
    indices = np.array([0, 3, 3, 5])
    batch, is_image = joint_batch(ds, indices, num_image_frames=5, rng=np.random.default_rng(0))
    assert batch.shape == (4, T + 5, H, H, 1) and batch.dtype == np.float32
    assert is_image.shape == (4, T + 5) and is_image[:, T:].all() and not is_image[:, :T].any()
    np.testing.assert_array_equal(batch[:, :T], ds.batch(indices))  # no flips: the clips unchanged
    for b, i in enumerate(indices):
        for k in range(T, T + 5):
            video, frame, _ = provenance(batch[b, k])
            assert video != i and 0 <= video < len(ds) and 0 <= frame < T


def test_image_frames_are_uniform_over_the_other_videos_and_frames():
    ds = labelled_dataset(num_videos=5)
    n_draws = 4000
    batch, _ = joint_batch(ds, np.zeros(n_draws // 4, int), num_image_frames=4, rng=np.random.default_rng(1))
    sources = np.array([provenance(f)[:2] for f in batch[:, T:].reshape(-1, H, H, 1)])
    video_counts = np.bincount(sources[:, 0], minlength=5)
    frame_counts = np.bincount(sources[:, 1], minlength=T)
    assert video_counts[0] == 0
    # each of 4 other videos has p = 1/4, each frame p = 1/T: counts within 5 binomial SEs
    se_v = np.sqrt(n_draws * 0.25 * 0.75)
    assert np.all(np.abs(video_counts[1:] - n_draws / 4) < 5 * se_v)
    se_f = np.sqrt(n_draws * (1 / T) * (1 - 1 / T))
    assert np.all(np.abs(frame_counts - n_draws / T) < 5 * se_f)


def test_image_frames_avoid_clips_of_the_same_source_video():
    class TwoClipsPerVideo(ArrayDataset):
        video_ids = property(lambda self: np.array([7, 7, 9]))  # clips 0 and 1 share a video

    ds = TwoClipsPerVideo(labelled_dataset(num_videos=3).videos)
    batch, _ = joint_batch(ds, [0, 1, 2], num_image_frames=6, rng=3)
    assert {provenance(f)[0] for f in batch[0, T:]} == {2}
    assert {provenance(f)[0] for f in batch[1, T:]} == {2}
    assert {provenance(f)[0] for f in batch[2, T:]} <= {0, 1}


def test_same_seed_same_batch_and_no_image_frames_is_a_plain_batch():
    ds = labelled_dataset()
    a = joint_batch(ds, [1, 2], 3, rng=42)
    b = joint_batch(ds, [1, 2], 3, rng=np.random.default_rng(42))
    np.testing.assert_array_equal(a[0], b[0])
    plain, mask = joint_batch(ds, [1, 2], 0, rng=0)
    np.testing.assert_array_equal(plain, ds.batch([1, 2]))
    assert mask.shape == (2, T) and not mask.any()


def test_augmentation_flips_image_frames_independently():
    ds = labelled_dataset(flip=True)
    batch, _ = joint_batch(ds, np.arange(6), num_image_frames=8, rng=0)
    flips = np.array([[provenance(f)[2] for f in clip[T:]] for clip in batch])
    assert 0 < flips.mean() < 1
    assert np.any(flips.any(axis=1) & ~flips.all(axis=1))  # mixed within one clip: independent coins
    clip_flips = np.array([[provenance(f)[2] for f in clip[:T]] for clip in batch])
    assert np.all(clip_flips.all(axis=1) | ~clip_flips.any(axis=1))  # a clip flips as a whole


def test_one_video_cannot_supply_other_videos():
    with pytest.raises(ValueError, match="no video other than"):
        joint_batch(labelled_dataset(num_videos=1), [0], 2, rng=0)


def test_moving_mnist_joint_batch_uses_single_frame_rendering():
    ds = MovingMNIST(16, num_frames=5, resolution=32, digit_size=14, seed=0)
    batch, is_image = joint_batch(ds, [0, 1], num_image_frames=3, rng=0)
    assert batch.shape == (2, 8, 32, 32, 1) and is_image.sum() == 6
    all_frames = np.concatenate([ds.clip(i) for i in range(16)])
    for image in batch[:, 5:].reshape(-1, 32, 32, 1):  # every image frame is some frame of the dataset
        assert np.any(np.all(all_frames == image, axis=(1, 2, 3)))
