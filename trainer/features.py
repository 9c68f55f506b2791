"""Fit the model's feature standardisation (``model.feature_norm``) from the schedule's training images.

The statistics come from the first ``num_images`` images of the schedule's image sources (image-caption
sources first, then instruction sources with images; each in MDS order, every image of a sample with
several), whatever the run's own start point: every run of a sweep shares the sources, so a trunk and its
branches compute the same numbers (a branched or resumed run then loads them from the checkpoint anyway).
Reading and encoding 512 32-px images takes about a second on one CPU core.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixture.errors import MixtureError
from mixture.locations import is_url
from streaming_data.instruction import sample_images
from trainer.model import VLM, set_feature_norm

_IMAGE_KINDS = ("image_caption", "instruction")


def fit_feature_norm(model: VLM, schedule: Any, pixels: Any, num_images: int) -> int:  # noqa: ANN401
    """Set ``model``'s standardisation from the schedule's first training images; returns how many were used.

    Args:
        model: A VLM built with ``feature_norm``.
        schedule: The run's :class:`mixture.schedule.Schedule` (its sources' locations are read).
        pixels: Decodes an image's bytes to uint8 ``[3, S, S]`` (the collator's ``pixels``).
        num_images: Images to read at most.

    Raises:
        MixtureError: The schedule has no local image source, or fewer than 2 images.
    """
    from streaming import LocalDataset

    found: list[np.ndarray] = []
    sources = sorted((s for s in schedule.sources if s.kind in _IMAGE_KINDS), key=lambda s: _IMAGE_KINDS.index(s.kind))
    for source in sources:
        if not source.location or is_url(source.location) or not Path(source.location, "index.json").exists():
            continue
        dataset = LocalDataset(local=source.location)
        for i in range(len(dataset)):
            if len(found) >= num_images:
                break
            for image, _ in sample_images(dataset[i])[: num_images - len(found)]:  # every image of a sample
                found.append(pixels(image))
    if len(found) < 2:
        raise MixtureError("model.feature_norm needs training images, but the schedule's local image sources hold "
                           f"{len(found)}", hint="set model.feature_norm: none, or add an image source")
    set_feature_norm(model.core, torch.from_numpy(np.stack(found)))
    return len(found)
