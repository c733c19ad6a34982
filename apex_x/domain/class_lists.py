"""The class list of a model (category id + name) against the class list of a dataset file: any difference
is refused before inference, with the differing ids and names of both sides."""

from __future__ import annotations

from apex_x.domain.errors import DatasetError
from apex_x.domain.types import CategoryMap


def class_list_differences(model: CategoryMap, data: CategoryMap, *, model_label: str = "checkpoint",
                           data_label: str = "data") -> list[str]:
    """One line per difference: an id named differently, an id on one side only. Empty when they agree."""
    ours = dict(zip(model.original_ids, model.names, strict=True))
    theirs = dict(zip(data.original_ids, data.names, strict=True))
    lines = [f"id {cid}: {ours[cid]!r} in the {model_label}, {theirs[cid]!r} in the {data_label}"
             for cid in sorted(set(ours) & set(theirs)) if ours[cid] != theirs[cid]]
    lines += [f"id {cid} ({ours[cid]!r}) only in the {model_label}" for cid in sorted(set(ours) - set(theirs))]
    lines += [f"id {cid} ({theirs[cid]!r}) only in the {data_label}" for cid in sorted(set(theirs) - set(ours))]
    return lines


def require_same_classes(model: CategoryMap, data: CategoryMap, *, checkpoint: str, data_kind: str,
                         data_name: str, action: str) -> None:
    """Raise a DatasetError listing every difference (both sides) unless the class lists are the same.
    `data_kind` names the other side in the listing (e.g. "val file"), `data_name` its path."""
    differences = class_list_differences(model, data, model_label="checkpoint", data_label=data_kind)
    if not differences:
        return
    shown = "; ".join(differences[:12]) + (f"; ... ({len(differences) - 12} more)" if len(differences) > 12 else "")
    raise DatasetError(
        f"the class list of the checkpoint {checkpoint} differs from the {data_kind} {data_name} "
        f"({len(differences)} difference(s)): {shown}. checkpoint: {_listing(model)}; {data_kind}: {_listing(data)}. "
        f"Nothing was run: {action} on data with the classes (ids and names) the model was trained on"
    )


def categories_from_coco(entries: object) -> CategoryMap:
    """The CategoryMap of a COCO 'categories' list (in id order); entries without an int id and a name are skipped."""
    pairs = sorted(
        (int(item["id"]), str(item["name"])) for item in (entries if isinstance(entries, list) else [])
        if isinstance(item, dict) and isinstance(item.get("id"), int) and not isinstance(item.get("id"), bool)
        and isinstance(item.get("name"), str)
    )
    return CategoryMap(tuple(cid for cid, _ in pairs), tuple(name for _, name in pairs))


def _listing(categories: CategoryMap) -> str:
    items = [f"{cid} {name!r}" for cid, name in zip(categories.original_ids, categories.names, strict=True)]
    return "[" + ", ".join(items[:20]) + (", ..." if len(items) > 20 else "") + "]"
