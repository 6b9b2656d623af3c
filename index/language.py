"""Language identification for articles that arrive without a ``language``."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

_SAMPLE_CHARS = 600


@lru_cache(maxsize=1)
def _identifier() -> Any:
    # py3langid loads its bundled model on first use (~0.5 s); keep it off the import path.
    import py3langid

    return py3langid


def detect_language(text: str) -> str | None:
    """A BCP-47 primary language subtag for ``text`` (e.g. ``"ar"``), or None if empty."""
    sample = text[:_SAMPLE_CHARS].strip()
    if not sample:
        return None
    language, _score = _identifier().classify(sample)
    return str(language)
