"""Category rules of a COCO split (ids, names, gaps) and the train/val agreement."""

from __future__ import annotations

from typing import Any

from apex_x.adapters.datasets.findings import FindingLog
from apex_x.adapters.datasets.json_values import describe, is_int, parse_json
from apex_x.domain.text_rules import text_problem


def check_categories(entries: list[Any], file: str, log: FindingLog,
                     rejected: set[int] | None = None) -> dict[int, dict[str, Any]]:
    """Usable categories by id; `rejected` gets the ids of categories refused for a finding already reported
    (their annotations are then not reported again as "not in 'categories'")."""
    rejected = rejected if rejected is not None else set()
    categories: dict[int, dict[str, Any]] = {}
    names: dict[str, int] = {}
    folded: dict[str, int] = {}  # name in lower case without surrounding spaces -> first id
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            log.error(
                "category.invalid",
                f"categories[{position}] must be an object, got {describe(entry)}",
                file=file,
            )
            continue
        cid, name = entry.get("id"), entry.get("name")
        if not is_int(cid):
            log.error(
                "category.id_type",
                f"categories[{position}].id must be an integer, got {describe(cid)}",
                file=file,
            )
            continue
        if not isinstance(name, str) or not name:
            log.error(
                "category.invalid",
                f"category {cid} needs a non-empty string name, got {describe(name)}",
                file=file,
            )
            continue
        bad_text = next(((key, entry[key], problem) for key in ("name", "supercategory")
                         if isinstance(entry.get(key), str) and (problem := text_problem(entry[key]))), None)
        if bad_text is not None:
            key, text, problem = bad_text
            log.error(
                "category.name_invalid",
                f"category {cid}'s {key} {text!r} holds {problem}: names must be printable Unicode text (they are "
                "printed, and written to reports and exported models)",
                file=file,
            )
            rejected.add(cid)
            continue
        if cid in categories:
            log.error(
                "category.duplicate_id",
                f"category id {cid} appears more than once ({categories[cid]['name']!r}, {name!r})",
                file=file,
            )
            continue
        if name in names:
            log.warning(
                "category.duplicate_name",
                f"categories {names[name]} and {cid} share the name {name!r}",
                file=file,
            )
        elif name.strip().casefold() in folded:
            other = folded[name.strip().casefold()]
            log.warning(
                "category.similar_names",
                f"categories {other} {categories[other]['name']!r} and {cid} {name!r} differ only in case or "
                "surrounding spaces: probably one class labelled two ways, trained as two classes; merge them "
                "(one id in the annotations) or rename one",
                file=file,
            )
        categories[cid] = {key: entry[key] for key in ("id", "name", "supercategory")
                           if key in entry and isinstance(entry[key], (str, int))}  # a nested supercategory: dropped
        names[name] = cid
        folded.setdefault(name.strip().casefold(), cid)
    if not categories:
        log.error("category.empty", "no usable categories: the model needs at least one class", file=file)
    return categories


def note_id_gaps(classes: list[dict[str, Any]], file: str, log: FindingLog) -> None:
    """Info when the class ids (after grouping categories are left out) are not contiguous: they are remapped."""
    ids = sorted(int(c["id"]) for c in classes)
    if ids and ids != list(range(ids[0], ids[0] + len(ids))):
        log.info(
            "category.id_gaps",
            f"category ids {ids[0]}..{ids[-1]} are not contiguous ({len(ids)} categories); they are remapped to "
            f"training ids 0..{len(ids) - 1} in id order and mapped back in predictions",
            file=file,
        )


def grouping_categories(categories: list[dict[str, Any]], annotated: set[int]) -> list[dict[str, Any]]:
    """Categories that group the others instead of being a class: no annotation, and the `supercategory` of
    every other category (e.g. id 0 'cells' over 'red', 'white' whose supercategory is 'cells')."""
    found = []
    for category in categories:
        others = [other for other in categories if other is not category]
        if category["id"] in annotated or not others:
            continue
        if all(other.get("supercategory") == category["name"] for other in others):
            found.append(category)
    return found


def apply_grouping_rule(categories: list[dict[str, Any]], annotated: set[int], *, keep: bool, key: str, file: str,
                        log: FindingLog, decided: tuple[set[int], set[int]] | None = None) -> list[dict[str, Any]]:
    """Leave grouping categories out of the classes (with a warning naming them), or keep them when asked.

    `decided`: (the ids the train split left out as grouping categories, all of train's category ids); a val
    split applies that decision (so a category annotated in train but not in val stays a class in both) and
    decides only for categories train does not list."""
    if decided is not None and not keep:
        left_out, train_ids = decided
        own = {c["id"] for c in grouping_categories(categories, annotated) if c["id"] not in train_ids}
        return _apply_train_decision(categories, annotated, left_out, own, key=key, file=file, log=log)
    grouping = grouping_categories(categories, annotated)
    for category in grouping:
        others = [c for c in categories if c is not category]
        classes = ", ".join(f"{c['id']} {c['name']!r}" for c in others[:10]) + (", ..." if len(others) > 10 else "")
        if keep:
            log.warning(
                "category.grouping_kept",
                f"category {category['id']} {category['name']!r} has no annotations and is the supercategory of all "
                f"{len(others)} other categories: a grouping category, kept as a class because "
                "data.keep_grouping_categories=true (the model will have a class it never sees)",
                file=file,
            )
        else:
            log.warning(
                "category.grouping_left_out",
                f"{key}: category {category['id']} {category['name']!r} has no annotations and is the supercategory "
                f"of all {len(others)} other categories: a grouping category of the export, not a class; it is left "
                f"out of the training classes ({len(others)}: {classes}). Set data.keep_grouping_categories=true "
                "to keep it",
                file=file,
            )
    if keep or not grouping:
        return categories
    dropped = {category["id"] for category in grouping}
    return [category for category in categories if category["id"] not in dropped]


def _apply_train_decision(categories: list[dict[str, Any]], annotated: set[int], decided: set[int], own: set[int],
                          *, key: str, file: str, log: FindingLog) -> list[dict[str, Any]]:
    """A val split leaves out the categories the train split left out as grouping categories, and its own
    grouping categories that train does not list at all (`own`)."""
    for category in categories:
        if category["id"] in own:
            log.info(
                "category.grouping_left_out",
                f"{key}: category {category['id']} {category['name']!r} has no annotations, is the supercategory of "
                "all other categories and is not in the train split: a grouping category, left out of the classes",
                file=file,
            )
            continue
        if category["id"] not in decided:
            continue
        if category["id"] in annotated:
            log.error(
                "category.grouping_annotated",
                f"{key}: category {category['id']} {category['name']!r} has annotations here, but the train split "
                "left it out as a grouping category (no annotations there, the supercategory of all others): the "
                "model would never predict it. Remove those annotations, or set data.keep_grouping_categories=true",
                file=file,
            )
        else:
            log.info(
                "category.grouping_left_out",
                f"{key}: category {category['id']} {category['name']!r} is left out of the classes, as in the train "
                "split (a grouping category there)",
                file=file,
            )
    return [category for category in categories if category["id"] not in decided | own]


def describe_classes(categories: list[dict[str, Any]], limit: int = 20) -> str:
    """'3: 1 'cat', 2 'dog', 5 'bird'': the categories a class count counted."""
    shown = ", ".join(f"{c['id']} {c['name']!r}" for c in categories[:limit])
    return f"{len(categories)}: {shown}" + (", ..." if len(categories) > limit else "")


def compare_categories(
    train: list[dict[str, Any]],
    val: list[dict[str, Any]],
    *,
    train_key: str,
    val_key: str,
    val_file: str,
    log: FindingLog,
) -> None:
    """Train and val must list the same categories (ids and names)."""
    train_map = {c["id"]: c["name"] for c in train}
    val_map = {c["id"]: c["name"] for c in val}
    if train_map == val_map:
        return
    only_train = sorted(set(train_map) - set(val_map))
    only_val = sorted(set(val_map) - set(train_map))
    renamed = sorted(cid for cid in set(train_map) & set(val_map) if train_map[cid] != val_map[cid])
    parts = []
    if only_train:
        parts.append(f"ids only in train: {only_train[:10]}")
    if only_val:
        parts.append(f"ids only in val: {only_val[:10]}")
    if renamed:
        parts.append(
            "names differ for ids "
            + ", ".join(f"{cid} ({train_map[cid]!r} vs {val_map[cid]!r})" for cid in renamed[:5])
        )
    log.error(
        "dataset.category_mismatch",
        f"{train_key} and {val_key} must list the same categories: " + "; ".join(parts),
        file=val_file,
    )


def read_coco_classes(path: str) -> tuple[Any, dict[str, int], set[int]]:
    """A COCO JSON's class list (CategoryMap, id order), its images' ids by file name (full and base name) and
    the ids of its grouping categories (see `grouping_categories`).

    For predict and the notebook: the checkpoint's class list is compared with it before any inference."""
    from pathlib import Path

    from apex_x.domain.class_lists import categories_from_coco
    from apex_x.domain.errors import DatasetError

    file = Path(path)
    try:
        data = parse_json(file.read_bytes())
    except FileNotFoundError:
        raise DatasetError(f"{path}: COCO file not found") from None
    except (OSError, ValueError) as error:  # JSONDecodeError, UnicodeDecodeError, JsonTooDeep
        raise DatasetError(f"{path}: cannot read the COCO JSON: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
        raise DatasetError(f"{path}: not a COCO file (no 'categories' list)")
    categories = categories_from_coco(data["categories"])
    annotated = {item.get("category_id") for item in data.get("annotations") or [] if isinstance(item, dict)}
    named = [item for item in data["categories"] if isinstance(item, dict) and is_int(item.get("id"))
             and isinstance(item.get("name"), str)]
    grouping = {int(item["id"]) for item in grouping_categories(named, annotated)}  # type: ignore[arg-type]
    ids: dict[str, int] = {}
    for image in data.get("images") or []:
        if isinstance(image, dict) and is_int(image.get("id")) and isinstance(image.get("file_name"), str):
            name = image["file_name"].replace("\\", "/")
            ids.setdefault(name, int(image["id"]))
            ids.setdefault(name.rsplit("/", 1)[-1], int(image["id"]))
    return categories, ids, grouping
