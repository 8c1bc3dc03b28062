"""The one noise rule (helpers.tasks.noise): known paired outcomes give the verdicts and intervals a statistician
would, for top-1 (exact McNemar) and for a metric resampled over images (paired bootstrap)."""
from __future__ import annotations

import numpy as np
import pytest

from helpers.tasks.noise import Paired, bootstrap, mcnemar


def outcomes(n: int, only_a: int, only_b: int, both: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-image correctness of two models on n images with the given discordant and concordant counts."""
    a = np.zeros(n, bool)
    b = np.zeros(n, bool)
    a[:only_a] = True
    b[only_a:only_a + only_b] = True
    a[only_a + only_b:only_a + only_b + both] = b[only_a + only_b:only_a + only_b + both] = True
    return a, b


def test_identical_models_are_within_noise_with_a_nonzero_interval():
    a, b = outcomes(360, 0, 0, 355)
    paired = mcnemar(a, b)
    assert paired.verdict == "within noise" and paired.difference_pt == 0.0
    assert -1.5 < paired.low_pt < 0 < paired.high_pt < 1.5  # 360 images cannot rule out about 1 pt either way
    assert paired.p_value == 1.0 and paired.discordant == (0, 0)


def test_a_loss_on_ten_images_and_no_gain_is_worse():
    a, b = outcomes(360, 10, 0, 340)
    paired = mcnemar(a, b)
    assert paired.verdict == "worse" and paired.difference_pt == pytest.approx(-100 * 10 / 360)
    assert paired.low_pt < paired.difference_pt < paired.high_pt < 0
    assert paired.p_value == pytest.approx(2 / 2 ** 10)  # exact: both tails of Binomial(10, 1/2) at 0


def test_a_few_discordant_images_either_way_are_within_noise():
    a, b = outcomes(360, 5, 2, 340)  # -0.8 pt: p = 0.45
    paired = mcnemar(a, b)
    assert paired.verdict == "within noise" and paired.low_pt < 0 < paired.high_pt
    assert "7 image(s) only one model gets right" in paired.method


def test_gains_are_better_and_the_text_carries_the_interval():
    a, b = outcomes(100, 0, 9, 80)
    paired = mcnemar(a, b)
    assert paired.verdict == "better" and paired.low_pt > 0
    assert paired.text.startswith("+9.0 pt (95 % CI +") and paired.text.endswith(", better")


@pytest.mark.parametrize("n", [60, 360])
def test_the_interval_excludes_zero_exactly_when_the_exact_test_finds_a_difference(n):
    for only_a in range(0, 12):
        for only_b in range(0, 12):
            paired = mcnemar(*outcomes(n, only_a, only_b, n // 2))
            assert (paired.verdict != "within noise") == (paired.low_pt > 0 or paired.high_pt < 0), (only_a, only_b)
            assert paired.low_pt <= paired.difference_pt <= paired.high_pt


def test_the_json_form_round_trips():
    paired = mcnemar(*outcomes(50, 3, 1, 40))
    assert Paired.from_dict(paired.to_dict()) == paired


def test_outcomes_of_different_image_sets_are_refused():
    with pytest.raises(ValueError, match="same images"):
        mcnemar(np.ones(5, bool), np.ones(6, bool))


def test_bootstrap_separates_a_real_drop_from_resampling_noise():
    rng = np.random.default_rng(1)
    quality = rng.uniform(0.5, 1.0, 200)  # a per-image score; the metric is its mean over the chosen images

    def metric(shift: float):
        return lambda idx: float(np.mean(quality[idx] + shift))

    same = bootstrap(metric(0.0), metric(0.0), 200)
    assert same.verdict == "within noise" and same.difference_pt == 0.0
    drop = bootstrap(metric(0.0), metric(-0.05), 200)
    assert drop.verdict == "worse" and drop.difference_pt == pytest.approx(-5.0)
    assert drop.low_pt <= -5.0 <= drop.high_pt < 0
