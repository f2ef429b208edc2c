import numpy as np

from synthfair.evaluate.realism import fid, kid, privacy, project


def test_fid_and_kid_are_zero_for_one_distribution_and_grow_with_a_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    shifted = rng.normal(size=(400, 8)) + 1.0
    assert fid(a, b) < 0.3  # FID has a small-sample bias of about d^2 / n
    assert abs(kid(a, b)) < kid(a, shifted) / 10  # unbiased: zero in expectation, noisy per subset
    assert fid(a, shifted) > 7 and kid(a, shifted) > 0.1
    real, fake = project(a, shifted, components=3)
    assert real.shape == (400, 3) and fake.shape == (400, 3)


def test_privacy_flags_copies_of_training_images_only():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(200, 16))
    fresh = rng.normal(size=(50, 16))
    generated = np.concatenate([fresh, train[:5] + 1e-6])  # five near-copies
    result = privacy(generated, train)
    assert result.memorized[-5:].all()
    assert result.memorized[:50].mean() <= 0.1  # a fresh draw is flagged at about the percentile's rate (5%)
    assert {t for _, t, _ in result.closest(5)} == set(range(5))
