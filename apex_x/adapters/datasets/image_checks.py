"""Rules for the image files of a split: present, a readable image header, size as in the JSON (after EXIF),
no decompression bomb, and (full check) pixels that decode completely."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from apex_x.adapters.datasets.coco_checks import CheckedSplit
from apex_x.adapters.datasets.findings import FindingLog
from apex_x.adapters.datasets.images import (
    ImageReadError,
    bits_used,
    high_bit_depth_max,
    is_tiff16_colour,
    load_rgb,
    png16_max,
    probe_image,
    structural_verdict,
)
from apex_x.adapters.datasets.png16 import png16_colour_kind

# Rules of an image file that cannot be decoded: data.on_bad_image=skip turns them into warnings and leaves
# the image out (counted), error (the default) refuses the dataset.
BAD_IMAGE_RULES = ("image.unreadable", "image.decode_failed", "image.truncated")

_MODE_NOTES = {
    "L": "grayscale, replicated to RGB",
    "LA": "grayscale with alpha, composited over grey",
    "RGBA": "RGBA, alpha composited over grey",
    "P": "palette, expanded to RGB",
    "I;16": "16-bit, scaled to 8-bit",
    "I;16B": "16-bit, scaled to 8-bit",
    "I;16L": "16-bit, scaled to 8-bit",
    "I": "32-bit integer, scaled to 8-bit",
    "1": "1-bit, expanded to RGB",
    "CMYK": "CMYK, converted to RGB",
}


def image_file(images_dir: Path, file_name: str) -> Path:
    """Where an image of the split lies: its file_name under the images folder (backslashes read as "/")."""
    return images_dir / file_name.replace("\\", "/")


def image_path(split: CheckedSplit, image: dict[str, Any]) -> Path:
    return image_file(split.paths.images_dir, str(image["file_name"]))


def _look_nearby(split: CheckedSplit, missing: list[str], log: FindingLog, position: int) -> None:
    """Missing files that sit one folder away (an export with valid/images/ while the JSON names valid/): one
    finding, listed before the missing files, saying where they are and which key to change."""
    images_dir = split.paths.images_dir
    candidates: list[Path] = []
    for base in (images_dir, images_dir.parent):
        try:
            candidates += sorted(child for child in base.iterdir() if child.is_dir() and child != images_dir)
        except OSError:
            continue
    candidates.append(images_dir.parent)
    sample = missing[:50]
    best, found = None, 0
    for folder in candidates:
        count = sum(1 for name in sample if (folder / name).is_file())
        if count > found:
            best, found = folder, count
    if best is None:
        return
    log.error(
        "image.files_elsewhere",
        f"{split.paths.images_key}: {len(missing)} image file(s) are not in {images_dir}, but {found} of the "
        f"{len(sample)} looked for are in {best}: set {split.paths.images_key}={best} (in the config or with --set)",
        file=str(best),
    )
    log.findings.insert(position, log.findings.pop())


class _LinkRule:
    """Where an image file really lies, against its images folder: a symbolic link (of the file or of a folder
    in its name) that leads outside is refused unless data.allow_external_links. The resolved folders of nested
    names are cached, so a COCO-scale split costs one lstat per file."""

    def __init__(self, images_dir: Path) -> None:
        self.root = os.path.realpath(images_dir)
        self._folders: dict[str, str] = {}

    def target_outside(self, path: Path) -> str | None:
        """The resolved target when `path` leads outside the images folder, else None."""
        folder = str(path.parent)
        real_folder = self._folders.get(folder)
        if real_folder is None:
            real_folder = self._folders[folder] = os.path.realpath(folder)
        real = os.path.realpath(path) if os.path.islink(path) else os.path.join(real_folder, path.name)
        return None if real.startswith(self.root + os.sep) else real


def check_image_files(split: CheckedSplit, log: FindingLog, *, full_decode: bool,
                      on_bad_image: str = "error", high_bit_depth: str = "full_range",
                      allow_external_links: bool = False) -> dict[str, Any]:
    """Checks every listed image file; returns summary counters (modes, EXIF-rotated, checked) and
    `bad_images` (image id -> why) of files that cannot be decoded.

    Without `full_decode`, JPEG, PNG, BMP, GIF and WebP files get a cheap structural check (end marker, chunk
    or block walk, header size fields); a suspect file is then decoded to confirm, and a file of any other
    format (TIFF, ...) is decoded fully, so a truncated or cut-short file is always caught."""
    images_dir = split.paths.images_dir
    if not images_dir.is_dir():
        return {}
    try:
        listed = set(os.listdir(images_dir))
    except OSError:
        listed = set()
    modes: Counter[str] = Counter()
    mode_example: dict[str, int] = {}
    rotated: list[int] = []
    decoded = 0
    bad: dict[int, str] = {}

    def bad_image(rule: str, message: str, where: dict[str, Any]) -> None:
        bad[where["image_id"]] = f"{rule}: {message}"
        if on_bad_image == "skip":
            log.warning(rule, f"{message}; left out of the split (data.on_bad_image=skip)", **where)
        else:
            log.error(rule, f"{message} (data.on_bad_image=skip would leave it out instead)", **where)

    partial_depth: dict[int, list[int]] = {}  # bits used -> image ids of 16-bit images using only that many
    colour16: dict[int, list[tuple[int, int]]] = {}  # bits used -> (image id, max value) of 48/64-bit PNGs
    tiff16: list[tuple[int, int]] = []  # (image id, max value after decoding) of 16-bit-per-channel colour TIFFs
    missing: list[str] = []  # file names not found (relative to images_dir)
    links = _LinkRule(images_dir)
    first_missing = len(log.findings)

    for image in split.images:
        image_id = image["id"]
        path = image_path(split, image)
        name = str(image["file_name"])
        where = {"file": str(path), "image_id": image_id}
        nested = "/" in name or "\\" in name
        if (not path.is_file()) if nested else (name not in listed):
            if not missing:
                first_missing = len(log.findings)
            missing.append(name.replace("\\", "/"))
            log.error(
                "image.file_missing", f"{split.paths.images_key}: image file not found: {path}", **where
            )
            continue
        outside = None if allow_external_links else links.target_outside(path)
        if outside is not None:
            log.error(
                "image.link_outside",
                f"{name} is a symbolic link to {outside}, outside the images folder {images_dir}; only files inside "
                "it are opened (set data.allow_external_links=true to follow such links)",
                **where,
            )
            continue
        try:
            probe = probe_image(path)
        except ImageReadError as error:
            if error.rule in BAD_IMAGE_RULES:
                bad_image(error.rule, str(error), where)
            else:
                log.error(error.rule, f"{error}", **where)
            continue
        expected = (image["width"], image["height"])
        if (probe.width, probe.height) != expected:
            hint = ""
            if probe.orientation != 1 and (probe.raw_width, probe.raw_height) == expected:
                hint = (
                    f"; the JSON has the size before EXIF orientation {probe.orientation}: the annotations were "
                    "probably drawn on the unrotated pixels (re-export them on the displayed image, or strip the tag)"
                )
            log.error(
                "image.size_mismatch",
                f"the file is {probe.width}x{probe.height} (after EXIF orientation) but the JSON says "
                f"{expected[0]}x{expected[1]}{hint}",
                **where,
            )
            continue
        if probe.orientation != 1:
            rotated.append(image_id)
        if probe.mode != "RGB":
            modes[probe.mode] += 1
            mode_example.setdefault(probe.mode, image_id)
        # A format without a cheap structural check (TIFF, ...) is decoded fully even by default, so that no
        # image can pass this check and then fail in training; a suspect file is decoded to confirm.
        checked, suspect = (False, None) if full_decode else structural_verdict(path, probe.format)
        try:
            if full_decode or suspect:
                load_rgb(path)
                decoded += 1
            # The 16-bit scans decode every pixel: no further decode needed for an unchecked format.
            if probe.mode.startswith("I;16"):
                top = high_bit_depth_max(path)
                if top is not None and bits_used(top) < 16:
                    partial_depth.setdefault(bits_used(top), []).append(image_id)
            elif probe.format == "PNG" and png16_colour_kind(path):
                top = png16_max(path)
                colour16.setdefault(bits_used(top), []).append((image_id, top))
            elif probe.format == "TIFF" and is_tiff16_colour(path):
                tiff16.append((image_id, int(load_rgb(path).max())))
            elif not checked and not full_decode:
                load_rgb(path)
        except ImageReadError as error:
            bad_image("image.truncated" if suspect else error.rule, suspect or str(error), where)
    if missing:
        _look_nearby(split, missing, log, first_missing)
    if rotated:
        log.info(
            "image.exif_orientation",
            f"{len(rotated)} image(s) carry an EXIF orientation; they are rotated on load to match the JSON size",
            file=str(images_dir),
            image_id=rotated[0],
        )
    for bits, ids in sorted(partial_depth.items()):
        levels = (2**bits - 1) * 255 // 65535 + 1
        if high_bit_depth == "used_bits":
            log.info("image.high_bit_depth", f"{len(ids)} 16-bit image(s) use only {bits} bits; scaled over those "
                     f"{bits} bits to 0..255 (data.high_bit_depth_scaling=used_bits)", file=str(images_dir), image_id=ids[0])
        else:
            log.warning(
                "image.high_bit_depth",
                f"{len(ids)} 16-bit image(s) use only {bits} of 16 bits (values 0..{2**bits - 1}): scaled over the "
                f"full 16-bit range they train as ~{levels} grey levels (nearly black). Set "
                "data.high_bit_depth_scaling=used_bits to scale them over the bits they use",
                file=str(images_dir), image_id=ids[0],
            )
    _report_colour16(colour16, high_bit_depth, log, str(images_dir))
    if tiff16:
        log.warning(
            "image.high_bit_depth_colour",
            f"{len(tiff16)} TIFF(s) with 16 bits per colour channel: decoded to 8 bits by the high byte (max value "
            f"after decoding {max(top for _, top in tiff16)} of 255); data.high_bit_depth_scaling cannot rescale "
            "16-bit colour TIFFs: save them as 16-bit PNG (then used_bits applies) or scale them to 8 bits yourself",
            file=str(images_dir), image_id=tiff16[0][0],
        )
    for mode, count in sorted(modes.items()):
        log.info(
            "image.mode_converted",
            f"{count} image(s) in mode {mode} ({_MODE_NOTES.get(mode, 'converted to RGB')})",
            file=str(images_dir),
            image_id=mode_example[mode],
        )
    return {
        "exif_rotated": len(rotated),
        "modes": dict(sorted(modes.items())),
        "decoded": decoded if full_decode else None,
        "bad_images": bad,
    }


def _report_colour16(colour16: dict[int, list[tuple[int, int]]], high_bit_depth: str, log: FindingLog,
                     file: str) -> None:
    """16-bit-per-channel colour PNGs (48-bit RGB / 64-bit RGBA), grouped by the bits their colour uses: what
    they are scaled to, how many of the 256 levels survive, and (full_range with unused bits) a warning."""
    for bits, entries in sorted(colour16.items()):
        ids = [image_id for image_id, _ in entries]
        top = max(value for _, value in entries)
        what = f"{len(ids)} PNG(s) with 16 bits per colour channel (48/64-bit) use {bits} of 16 bits (max {top})"
        if high_bit_depth == "used_bits" or bits == 16:
            scale = "those bits (data.high_bit_depth_scaling=used_bits)" if bits < 16 else "the full 16-bit range"
            log.info("image.high_bit_depth_colour", f"{what}; scaled over {scale} to 0..255 per channel",
                     file=file, image_id=ids[0])
            continue
        after = (top * 255 + 32767) // 65535
        log.warning(
            "image.high_bit_depth_colour",
            f"{what}: scaled over the full 16-bit range (data.high_bit_depth_scaling=full_range) their colour "
            f"ends at {after} of 255 (~{after + 1} levels per channel, nearly black). Set "
            "data.high_bit_depth_scaling=used_bits to scale them over the bits they use",
            file=file, image_id=ids[0],
        )
