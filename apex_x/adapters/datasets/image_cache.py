"""data.cache: decoded images at their base size (TransformSettings.base_size) kept in RAM or on disk.

The cached array is exactly what an uncached load produces (decode, EXIF, RGB, resize once to the base size),
so cached and uncached samples are identical; augmentations run after the cache. Before filling, the size is
estimated from the JSON's image sizes and logged (`data.cache_estimate`); RAM is refused when the estimate
exceeds RAM_SHARE of the available memory, disk when it exceeds the free space of the cache folder.

- `ram`: one array per image, filled in the main process (threads) before the DataLoader starts its workers;
  forked workers share the pages copy-on-write (a spawned worker would get a copy: use `disk` there).
- `disk`: one `<key>.npy` per image under `data.cache_dir`; the key hashes the file's resolved path, size,
  mtime, the base size and the 16-bit scaling, so an edited image or another input size gets a new entry.
  Filled lazily by whichever process loads the image first (atomic_write), reused by later runs.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from apex_x.adapters.atomic_files import atomic_write
from apex_x.adapters.datasets.check_cache import cache_root
from apex_x.domain.errors import DatasetError, UserError

CACHE_VERSION = 1
RAM_SHARE = 2 / 3  # data.cache=ram is refused above this share of the available memory (Ultralytics: 1 / 1.5)
GIB = 2**30


class ImageCache(Protocol):
    """Base-size images by index; get returns None when the image is not cached (yet)."""

    def get(self, index: int) -> np.ndarray | None: ...

    def put(self, index: int, array: np.ndarray) -> None: ...


class NoImageCache:
    def get(self, index: int) -> np.ndarray | None:
        return None

    def put(self, index: int, array: np.ndarray) -> None:
        return None


class RamImageCache:
    """(h, w, 3) uint8 arrays in this process's memory (shared with forked workers)."""

    def __init__(self, count: int) -> None:
        self.arrays: list[np.ndarray | None] = [None] * count

    def get(self, index: int) -> np.ndarray | None:
        return self.arrays[index]

    def put(self, index: int, array: np.ndarray) -> None:
        self.arrays[index] = array

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays if a is not None)


class DiskImageCache:
    """One .npy per image in `folder`, named by `keys[index]`."""

    def __init__(self, folder: Path, keys: Sequence[str]) -> None:
        self.folder, self.keys = folder, list(keys)

    def path(self, index: int) -> Path:
        return self.folder / f"{self.keys[index]}.npy"

    def get(self, index: int) -> np.ndarray | None:
        path = self.path(index)
        try:
            array = np.load(path, allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError, EOFError):
            return None  # not there yet, or unreadable: decode again and rewrite it
        return array if array.ndim == 3 and array.dtype == np.uint8 else None

    def put(self, index: int, array: np.ndarray) -> None:
        try:  # a temp file beside it, then renamed: a reader never sees half a file
            atomic_write(self.path(index), lambda handle: np.save(handle, np.ascontiguousarray(array),
                                                                  allow_pickle=False), what="cached image")
        except UserError:
            pass  # a full disk costs speed, never the run: the image is decoded again next time


def default_cache_dir() -> Path:
    """data.cache=disk without data.cache_dir: `images/` in Apex-X's cache folder (check_cache.cache_root)."""
    return cache_root() / "images"


def file_key(path: Path, base: tuple[int, int], high_bit_depth: str) -> str:
    """Content key of one cached image: resolved path, size and mtime of the file, base size, 16-bit scaling."""
    try:
        stat = path.stat()
        stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        stamp = "missing"
    text = f"{CACHE_VERSION}|{path.resolve()}|{stamp}|{base[0]}x{base[1]}|{high_bit_depth}"
    return hashlib.sha1(text.encode()).hexdigest()


def estimate_bytes(sizes: Sequence[tuple[int, int]]) -> int:
    """Bytes of the cached images: (width, height) base sizes, 3 uint8 channels each."""
    return int(sum(int(w) * int(h) * 3 for w, h in sizes))


def check_ram(needed: int, available: int | None, *, split: str, images: int) -> None:
    """Refuse data.cache=ram when `needed` bytes exceed RAM_SHARE of `available` (DatasetError, exit 2)."""
    if available is None or needed <= RAM_SHARE * available:
        return
    raise DatasetError(
        f"data.cache=ram: the {split} split's {images} images at their training size need ~{needed / GIB:.2f} GiB, "
        f"more than {RAM_SHARE:.0%} of the {available / GIB:.2f} GiB of memory available; set data.cache=disk "
        "(files under data.cache_dir) or data.cache=none, or lower model.input_height/input_width"
    )


def check_disk(needed: int, folder: Path, *, split: str, images: int) -> None:
    """Refuse data.cache=disk when `needed` bytes exceed the free space of `folder` (DatasetError, exit 2)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if needed > 0:  # files to write: an unwritable folder would silently cache nothing (read-only + full is fine)
            with tempfile.TemporaryFile(dir=folder):
                pass
        free = shutil.disk_usage(folder).free
    except OSError as error:
        raise DatasetError(f"data.cache=disk: cannot use the cache folder {folder} (data.cache_dir): {error}") from None
    if needed > free:
        raise DatasetError(
            f"data.cache=disk: the {split} split's {images} images at their training size need ~{needed / GIB:.2f} "
            f"GiB, more than the {free / GIB:.2f} GiB free in {folder}; point data.cache_dir at a larger disk or set "
            "data.cache=none"
        )
