"""Which documented operation a request path names, read from the app's OpenAPI document.

Starlette answers these questions only for the route that handles a request. Two callers
need them for requests no route handles: a request refused before routing (an oversize
body, counted under its route's template by the metrics), and a ``405`` (whose ``Allow``
header must list every method the path takes, not only those of the first route that
matches it). FastAPI nests included routers, so walking ``app.routes`` does not reach the
routes themselves; the OpenAPI paths list every documented template and its methods.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.routing import compile_path

# The HTTP methods an OpenAPI path item can name (its other keys are not operations).
METHODS = frozenset(("get", "put", "post", "delete", "patch", "head", "options"))


def _operations(app: Any) -> list[tuple[re.Pattern[str], str, frozenset[str]]]:
    """(path pattern, template, upper-case methods) of every documented path, in order."""
    cached: list[tuple[re.Pattern[str], str, frozenset[str]]] | None = getattr(
        app.state, "_samestory_operations", None
    )
    if cached is None:
        cached = [
            (
                compile_path(template)[0],
                template,
                frozenset(m.upper() for m in methods if m in METHODS),
            )
            for template, methods in app.openapi().get("paths", {}).items()
        ]
        app.state._samestory_operations = cached
    return cached


def methods_of(app: Any, path: str) -> list[str]:
    """The methods the app documents for ``path`` (HEAD wherever GET is), sorted."""
    methods: set[str] = set()
    for pattern, _template, allowed in _operations(app):
        if pattern.match(path):
            methods |= allowed
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def template_of(app: Any, path: str, method: str) -> str | None:
    """The documented template that would handle ``method path``, as routing picks it (the
    first that takes the method, else the first that matches the path), or None."""
    matching = [
        (template, allowed)
        for pattern, template, allowed in _operations(app)
        if pattern.match(path)
    ]
    wanted = "GET" if method == "HEAD" else method
    for template, allowed in matching:
        if wanted in allowed:
            return template
    return matching[0][0] if matching else None
