"""Messages for a name that is not one of the valid ones: every valid name, and the closest first."""
import difflib
from typing import Iterable, List


def close_matches(name: str, choices: Iterable[str]) -> List[str]:
    """The valid names that look like ``name`` (case ignored), closest first."""
    by_lower = {choice.lower(): choice for choice in choices}
    return [by_lower[m] for m in difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)]


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> str:
    """``unknown <kind> 'name' (did you mean 'X'?); valid <kind>s: a, b, c``, the guess only when one is close."""
    choices = sorted(set(choices))
    matches = close_matches(name, choices)
    guess = f" (did you mean {' or '.join(repr(m) for m in matches)}?)" if matches else ""
    listed = ", ".join(choices) if choices else "(none)"
    return f"unknown {kind} {name!r}{guess}; valid {kind}s: {listed}"
