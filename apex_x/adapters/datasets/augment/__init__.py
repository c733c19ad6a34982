"""Real-data augmentation (mosaic, copy-paste, random affine, mixup, multi-scale) with exact boxes and masks.

Every image is warped once from its own pixels by one affine map (mosaic placement, affine and flip
composed); instance masks are warped at full input resolution (nearest, at pixel centres), boxes are
read off the warped masks, and the model's mask grid keeps the cells at least half covered.
"""
