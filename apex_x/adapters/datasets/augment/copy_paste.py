"""Copy-paste: objects of another image pasted by their masks; what they cover is cut from the masks below."""

from __future__ import annotations

import numpy as np

from apex_x.adapters.datasets.augment.warp import MIN_VISIBLE, Canvas

PASTE_PROB = 0.5  # each object of the donor image is pasted with this probability (at least one)
MAX_OVERLAP = 0.3  # an object is not pasted where it would cover more than this of itself over others


def copy_paste(canvas: Canvas, donor: Canvas, rng: np.random.Generator) -> Canvas:
    """The donor (built at the same input size) lends some of its non-crowd objects: their pixels replace the
    canvas's, existing masks lose what is covered (an instance keeping < MIN_VISIBLE of its area is
    dropped), and the pasted objects join the instances with their exact masks."""
    objects = np.flatnonzero(~donor.instances.crowd)
    if objects.size == 0:
        return canvas
    order = rng.permutation(objects)
    picked = [int(i) for i in order if rng.random() < PASTE_PROB] or [int(order[0])]
    occupied = canvas.instances.union(canvas.height, canvas.width)
    cover = np.zeros_like(occupied)
    chosen: list[int] = []
    for i in picked:
        (x0, y0), crop = donor.instances.origins[i].tolist(), donor.instances.crops[i]
        region = (slice(y0, y0 + crop.shape[0]), slice(x0, x0 + crop.shape[1]))
        overlap = int((crop & (occupied[region] | cover[region])).sum())
        if overlap <= MAX_OVERLAP * int(crop.sum()):
            cover[region] |= crop
            chosen.append(i)
    if not chosen:
        return canvas
    image = np.where(cover[..., None], donor.image, canvas.image)
    kept = canvas.instances.occluded_by(cover, MIN_VISIBLE)
    return Canvas(image, kept.concat(donor.instances.take(chosen)))
