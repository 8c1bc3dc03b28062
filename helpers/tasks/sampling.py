"""Representative images: which n images of a split calibration, scoring and accuracy_analysis use.

Stratified (the default): the images are ordered round-robin across classes, in passes: each pass takes, for
each class in turn (class 0, 1, ...), the next image not yet taken that holds it (a classifier's image holds its
folder's class, a detector's every class it has a box of; images are visited in a seeded shuffle, so the order
is deterministic); images with no class (a detector's background images) come last in each pass. The first n
images of that order are the subset, so every class gets its share (counts differ by at most one while a class
has images left), the first k images hold k different classes, and a subset of n starts with the subset of any
smaller n (notebooks 50 and 60 analyse the same images for the same count). Not stratified: the caller's older
plain draw (helpers.tasks.data, helpers.tasks.detect.labels)."""
from __future__ import annotations

import hashlib
from collections import deque
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np


def round_robin(classes_of: Sequence[Iterable[int]], seed: int = 0, names: Sequence[str] | None = None) -> np.ndarray:
    """Every image index once, in the stratified order above; classes_of[i]: the class ids image i holds. With
    names (the image paths), the shuffle is a seeded hash of each file's folder and name, so an image's place does
    not depend on the others listed nor on where the data folder lives: a subset of a subset of n is that subset."""
    n = len(classes_of)
    if names is None:
        visit = np.random.default_rng(seed).permutation(n)
    else:
        keys = [hashlib.sha1(f"{seed}:{Path(x).parent.name}/{Path(x).name}".encode()).hexdigest() for x in names]
        visit = np.argsort(np.asarray(keys), kind="stable")
    queues: dict[int, deque] = {}
    background: deque = deque()
    for i in visit:
        held = sorted({int(c) for c in classes_of[i]})
        for c in held:
            queues.setdefault(c, deque()).append(int(i))
        if not held:
            background.append(int(i))
    lanes = [queues[c] for c in sorted(queues)] + [background]  # one per class, then the background images
    taken = np.zeros(n, bool)
    order: list[int] = []
    while len(order) < n:
        for queue in lanes:
            while queue and taken[queue[0]]:
                queue.popleft()
            if queue:
                i = queue.popleft()
                taken[i] = True
                order.append(i)
    return np.asarray(order, np.int64)


def stratified(classes_of: Sequence[Iterable[int]], n: int | None, seed: int = 0,
               names: Sequence[str] | None = None) -> np.ndarray:
    """The first n image indices of the stratified order (all of them, in that order, when n is None or too big)."""
    order = round_robin(classes_of, seed, names)
    return order if n is None else order[:n]


def class_counts(classes_of: Sequence[Iterable[int]], names: Sequence[str]) -> dict[str, int]:
    """Per class name: how many images hold that class (a classifier's: its images; a detector's: images with a box of it)."""
    counts = dict.fromkeys(names, 0)
    for held in classes_of:
        for c in {int(c) for c in held}:
            key = names[c] if 0 <= c < len(names) else str(c)
            counts[key] = counts.get(key, 0) + 1
    return counts
