"""What a dataset's folders and text files list: class folders and image files in sorted order (so
that every machine sees the same sequence before any random step), and annotation lines."""
import os
from typing import Iterable, List

from mutual_prompt.files import listdir_nohidden

from .paths import require_file

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


def read_text_lines(path: str, dataset: str) -> List[str]:
    """Non-blank lines of a text file, stripped (also of Windows line endings)."""
    with open(require_file(path, dataset), "r", encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def list_class_folders(image_dir: str, ignored: Iterable[str] = ()) -> List[str]:
    """Sorted names of the non-hidden sub-folders of ``image_dir``, less ``ignored``."""
    skip = set(ignored)
    return [
        name
        for name in listdir_nohidden(image_dir, sort=True)
        if name not in skip and os.path.isdir(os.path.join(image_dir, name))
    ]


def list_images(folder: str) -> List[str]:
    """Sorted names of the non-hidden image files in ``folder`` (extension in any case).

    An empty class folder is an error, not a silently missing class.
    """
    names = [
        name
        for name in listdir_nohidden(folder, sort=True)
        if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS and os.path.isfile(os.path.join(folder, name))
    ]
    if not names:
        raise ValueError(
            f"Class folder {folder} holds no images (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, any case)"
        )
    return names
