"""Label checks shared by the datasets' split handling and the data manager: a label outside the
model's classes, or a class with no training items, is an error that names where the labels came from."""
from typing import Mapping, Optional, Sequence


def check_labels(parts: Mapping[str, Optional[Sequence]], num_classes: int, source: str, train_part: str = "train") -> None:
    """Every label of every part is in ``0..num_classes-1`` and every class has ``train_part`` items.

    ``parts`` maps a split name to its items (``Datum``-like: ``label``, ``impath``); ``None`` parts
    are skipped. ``source`` names the split file, few-shot cache or dataset the items came from.
    """
    for part, items in parts.items():
        for item in items or ():
            if not 0 <= item.label < num_classes:
                raise ValueError(
                    f"{source}: the {part} split holds label {item.label} ({item.impath}), outside the {num_classes} "
                    f"classes (labels 0-{num_classes - 1}) that its training split defines"
                )
    present = {item.label for item in parts.get(train_part) or ()}
    missing = [label for label in range(num_classes) if label not in present]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise ValueError(
            f"{source}: {len(missing)} of the {num_classes} classes have no {train_part} items (label(s) {shown}); "
            "every class needs training images"
        )
