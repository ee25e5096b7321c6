"""Check that every image a run will read opens, before the first epoch (under both hosts).

A missing or broken image would otherwise stop the run when a loader reaches it: for a test image,
after the whole training. Only the header is read (``PIL.Image.open`` decodes nothing), so
thousands of images take seconds.
"""
import time
from typing import Dict, List, Optional, Sequence, Tuple

from PIL import Image, UnidentifiedImageError

SHOWN = 10  # unreadable images listed by name; the rest are counted
PROGRESS_SECONDS = 10.0  # a long check prints how far it got this often


class UnreadableImages(ValueError):
    """Images of the dataset that do not open; the message lists them."""


def why_unreadable(path: str) -> Optional[str]:
    """Why the image header of ``path`` cannot be read, or None when it can."""
    try:
        with Image.open(path):
            return None
    except FileNotFoundError:
        return "missing"
    except UnidentifiedImageError:
        return "not an image file PIL can identify"
    except Exception as e:  # PIL raises many types for a broken header; none of them is a bug here
        return f"{type(e).__name__}: {e}"


def unreadable_images(paths: Sequence[str]) -> List[Tuple[str, str]]:
    """``(path, reason)`` of each of ``paths`` whose image header cannot be read; every
    ``PROGRESS_SECONDS`` a line says how many were checked."""
    bad = []
    reported = time.monotonic()
    for done, path in enumerate(paths, 1):
        reason = why_unreadable(path)
        if reason:
            bad.append((path, reason))
        if time.monotonic() - reported >= PROGRESS_SECONDS and done < len(paths):
            print(f"  {done:,} of {len(paths):,} images checked, {len(bad):,} unreadable so far", flush=True)
            reported = time.monotonic()
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
