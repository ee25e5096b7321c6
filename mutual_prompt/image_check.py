"""Check that every image a run will read opens, before the first epoch (under both hosts).

A missing or broken image would otherwise stop the run when a loader reaches it: for a test image,
after the whole training. Only the header is read (``PIL.Image.open`` decodes nothing), so
thousands of images take seconds.
"""
import time
from typing import Dict, List, Sequence, Tuple

from PIL import Image, UnidentifiedImageError

SHOWN = 10  # unreadable images listed by name; the rest are counted


class UnreadableImages(ValueError):
    """Images of the dataset that do not open; the message lists them."""


def unreadable_images(paths: Sequence[str]) -> List[Tuple[str, str]]:
    """``(path, reason)`` of each of ``paths`` whose image header cannot be read."""
    bad = []
    for path in paths:
        try:
            with Image.open(path):
                pass
        except FileNotFoundError:
            bad.append((path, "missing"))
        except UnidentifiedImageError:
            bad.append((path, "not an image file PIL can identify"))
        except Exception as e:  # PIL raises many types for a broken header; none of them is a bug here
            bad.append((path, f"{type(e).__name__}: {e}"))
    return bad


def check_images_open(parts: Dict[str, Sequence]) -> None:
    """Open the header of each image of ``parts`` (name -> items with ``impath``, e.g. Dassl's
    ``Datum``); raise ``UnreadableImages`` listing the first ``SHOWN`` that do not open and their count."""
    paths = list(dict.fromkeys(item.impath for items in parts.values() for item in items))
    print(f"Checking that the {len(paths):,} images of {', '.join(parts)} open ...", flush=True)
    start = time.time()
    bad = unreadable_images(paths)
    if bad:
        listed = "; ".join(f"{path} ({reason})" for path, reason in bad[:SHOWN])
        more = f"; and {len(bad) - SHOWN:,} more" if len(bad) > SHOWN else ""
        raise UnreadableImages(f"{len(bad):,} of the {len(paths):,} images of {', '.join(parts)} cannot be opened: "
                               f"{listed}{more}")
    print(f"All {len(paths):,} images open ({time.time() - start:.1f} s)")
