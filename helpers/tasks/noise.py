"""The workbook's one noise rule: is model B better, worse or within noise of model A on the same images?
Both are scored on identical images, so the test is paired: an exact McNemar test on the images only one of
them gets right (top-1), a paired bootstrap over images (mAP). Every comparison sentence, table and plot
interval in 30/50/60 and the index comes from a `Paired`."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
from scipy.stats import beta

Z95 = 1.959963984540054  # two-sided 95 % normal quantile
VERDICTS = ("better", "worse", "within noise")


@dataclass(frozen=True)
class Paired:
    """Model B minus model A on the same images, in points, with its 95 % interval and what it means."""

    difference_pt: float
    low_pt: float
    high_pt: float
    verdict: str  # "better" | "worse" | "within noise" (B against A)
    method: str  # how the verdict was reached, for footnotes: "exact McNemar on 7 discordant of 360 images, p = 0.23"
    images: int
    p_value: float | None = None
    discordant: tuple[int, int] | None = None  # (images only A gets right, images only B gets right)

    @property
    def interval_text(self) -> str:
        """'-1.4 pt (95 % CI -3.1 to +0.3)': the difference with its interval, signed."""
        return f"{self.difference_pt:+.1f} pt (95 % CI {self.low_pt:+.1f} to {self.high_pt:+.1f})"

    @property
    def text(self) -> str:
        """'-1.4 pt (95 % CI -3.1 to +0.3), within noise': what sentences and table cells print."""
        return f"{self.interval_text}, {self.verdict}"

    @property
    def measurable(self) -> bool:
        """True when the difference is more than the choice of images explains."""
        return self.verdict != "within noise"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form artifacts store (metrics.json, chosen.json): the index quotes it back verbatim."""
        data = asdict(self)
        data["discordant"] = list(self.discordant) if self.discordant is not None else None
        data["text"] = self.text
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Paired":
        """Read back what to_dict wrote."""
        fields = {k: data.get(k) for k in ("difference_pt", "low_pt", "high_pt", "verdict", "method", "images", "p_value")}
        disc = data.get("discordant")
        return cls(**fields, discordant=tuple(disc) if disc is not None else None)


def _binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of k successes in n fair coin flips (doubling the smaller tail, capped at 1)."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


def _clopper_pearson(k: int, n: int) -> tuple[float, float]:
    """Exact 95 % interval of a binomial share seen k times in n ([0, 1] when n is 0)."""
    low = float(beta.ppf(0.025, k, n - k + 1)) if k > 0 else 0.0
    high = float(beta.ppf(0.975, k + 1, n - k)) if k < n else 1.0
    return low, high


def mcnemar(a_correct: Any, b_correct: Any) -> Paired:
    """B's top-1 minus A's on the same images. The verdict is the exact McNemar test on the discordant images (5 %);
    the interval writes the difference as (share of discordant images) x (2 x share of them B gets right - 1) and
    takes both shares' exact intervals, so it excludes 0 exactly when the test finds a difference, and 0 discordant
    images still gets an honest, non-zero interval."""
    a = np.asarray(a_correct, bool).ravel()
    b = np.asarray(b_correct, bool).ravel()
    if a.shape != b.shape:
        raise ValueError(f"{a.size} and {b.size} per-image outcomes: score both models on the same images, in the same order.")
    n = int(a.size)
    if n == 0:
        raise ValueError("no images to compare: score both models on at least one image.")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    discordant = only_a + only_b
    p = _binomial_two_sided(min(only_a, only_b), discordant)
    q_low, q_high = _clopper_pearson(discordant, n)  # share of images only one model gets right
    s_low, s_high = _clopper_pearson(only_b, discordant)  # share of those that B gets right
    low = (q_high if s_low < 0.5 else q_low) * (2 * s_low - 1)
    high = (q_high if s_high > 0.5 else q_low) * (2 * s_high - 1)
    verdict = "within noise" if p >= 0.05 else ("better" if only_b > only_a else "worse")
    method = (f"exact McNemar test on the {discordant} image(s) only one model gets right "
              f"({only_a} only A, {only_b} only B) of {n}, p = {p:.2g}")
    return Paired(100.0 * (only_b - only_a) / n, 100.0 * low, 100.0 * high, verdict, method, n, p, (only_a, only_b))


def bootstrap(a_metric: Callable[[np.ndarray], float], b_metric: Callable[[np.ndarray], float], images: int,
              resamples: int = 50, seed: int = 0) -> Paired:
    """B's metric minus A's (each a function of image indices, e.g. mAP of those images), resampling the same
    images for both: the difference on all images, a normal 95 % interval from the resampled differences'
    spread; better/worse when the interval excludes 0."""
    if images < 2:
        raise ValueError(f"{images} image(s): a bootstrap over images needs at least 2; score on more images.")
    everything = np.arange(images)
    diff = 100.0 * (b_metric(everything) - a_metric(everything))
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        idx = rng.integers(0, images, images)
        diffs.append(100.0 * (b_metric(idx) - a_metric(idx)))
    spread = float(np.std(diffs, ddof=1)) if resamples > 1 else float("nan")
    low, high = diff - Z95 * spread, diff + Z95 * spread
    verdict = "better" if low > 0 else "worse" if high < 0 else "within noise"
    method = f"paired bootstrap over {images} images ({resamples} resamples, normal interval)"
    return Paired(diff, low, high, verdict, method, images)
