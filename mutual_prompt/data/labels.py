"""Label checks shared by the datasets' split handling and the data manager: a label with two class
names, a class with no training items, or a label outside the model's classes is an error that names
where the labels came from."""
from typing import Any, List, Mapping, Optional, Sequence, Tuple


def check_labels(
    parts: Mapping[str, Optional[Sequence]], num_classes: Optional[int], source: str, train_part: str = "train"
) -> None:
    """Every label has one class name, every class has ``train_part`` items, every label is in ``0..n-1``.

    ``parts`` maps a split name to its items (``Datum``-like: ``label``, ``impath``, ``classname``);
    ``None`` parts are skipped. ``num_classes`` is the model's class count, or None: the highest label
    of any part + 1. ``source`` names the split file, few-shot cache or dataset the items came from.
    """
    labelled = [(part, item) for part, items in parts.items() for item in items or ()]
    if not labelled:
        return
    _check_one_classname_per_label(labelled, source)
    _check_every_class_has_train_items(labelled, parts.get(train_part) or (), source, train_part)
    if num_classes is None:
        num_classes = max(item.label for _, item in labelled) + 1
    _check_label_range(labelled, num_classes, source)


def _check_one_classname_per_label(labelled: List[Tuple[str, Any]], source: str) -> None:
    first_seen = {}
    for part, item in labelled:
        seen = first_seen.setdefault(item.label, (item.classname, part, item.impath))
        if seen[0] != item.classname:
            raise ValueError(
                f"{source}: label {item.label} has two class names: {seen[0]!r} ({seen[1]} item {seen[2]}) "
                f"and {item.classname!r} ({part} item {item.impath}); each label needs one class name"
            )


def _check_every_class_has_train_items(
    labelled: List[Tuple[str, Any]], train_items: Sequence, source: str, train_part: str
) -> None:
    """The classes are the labels 0 to the highest of any part, so a last class without training items
    is named as one, not taken for a label outside the classes."""
    top_part, top = max(labelled, key=lambda pair: pair[1].label)
    num_classes = top.label + 1
    present = {item.label for item in train_items}
    missing = [label for label in range(num_classes) if label not in present]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        counted = ""
        if top.label not in present:
            counted = (f" (the classes are counted up to the highest label of any split: {top.label}, in the "
                       f"{top_part} split: {top.impath})")
        raise ValueError(
            f"{source}: {len(missing)} of the {num_classes} classes have no {train_part} items (label(s) {shown}); "
            f"every class needs training images{counted}"
        )


def _check_label_range(labelled: List[Tuple[str, Any]], num_classes: int, source: str) -> None:
    for part, item in labelled:
        if not 0 <= item.label < num_classes:
            raise ValueError(
                f"{source}: the {part} split holds label {item.label} ({item.impath}), outside the {num_classes} "
                f"classes (labels 0-{num_classes - 1})"
            )
