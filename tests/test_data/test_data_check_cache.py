"""A passed dataset check is reused for the same files and settings, and only for them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from .builders import rgb_image, small_dataset


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("APEX_X_CACHE_DIR", str(folder))
    return folder / "dataset_checks"


def _check(config: Path, *overrides: str):
    from apex_x.api import dataset_preflight

    return dataset_preflight(config, overrides=list(overrides))


def test_a_passed_check_is_reused_until_a_file_or_setting_changes(tmp_path: Path, cache: Path) -> None:
    dataset = small_dataset(tmp_path / "user")
    config = dataset.config()
    first = _check(config)
    assert first.ok and "check_cached" not in first.summary and len(list(cache.glob("*.json"))) == 1
    second = _check(config)
    assert second.summary.pop("check_cached") is True
    assert second.summary == first.summary and [f.to_plain() for f in second.findings] == [
        f.to_plain() for f in first.findings
    ]
    # a rewritten image (another size on disk) is another key: the check runs again
    Image.fromarray(rgb_image(seed=9)).save(dataset.images / "a.png")
    os.utime(dataset.images / "a.png", ns=(1, 1))
    assert "check_cached" not in _check(config).summary
    # another data.* setting is another key too
    assert "check_cached" not in _check(config, "data.on_bad_image=skip").summary
    assert "check_cached" not in _check(config, "data.check_cache=false").summary
    assert len(list(cache.glob("*.json"))) == 3  # the two passed checks above were stored, the uncached one not


def test_a_failed_check_is_never_cached_and_an_edited_annotation_file_is_checked_again(
    tmp_path: Path, cache: Path
) -> None:
    dataset = small_dataset(tmp_path / "user")
    config = dataset.config()
    assert _check(config).ok
    dataset.data["annotations"][0]["bbox"] = [0, 0, -5, 3]  # a degenerate box: an error
    dataset.write_json()
    failed = _check(config)
    assert not failed.ok and "check_cached" not in failed.summary
    assert not _check(config).ok  # checked again, not answered from the earlier pass
    assert len(list(cache.glob("*.json"))) == 1
