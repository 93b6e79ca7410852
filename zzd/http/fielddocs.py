"""Field meanings from the ``#:`` comments above model fields, for the documents.

The request models say what a field means in a ``#:`` comment above it (the
Sphinx convention the code already follows); pydantic does not read those, so
the OpenAPI builder adds them here to each property that has no
``description`` of its own, for the model and every model nested in it.
"""

from __future__ import annotations

import inspect
import re
from functools import cache
from typing import Any, get_args

from pydantic import BaseModel

__all__ = ["describe"]

#: What the fields that recur across requests mean, where a model says nothing of its own.
COMMON = {
    "as_position": "the position the caller acts as: one they hold (else 403 forbidden, data.as_position); "
    "its jurisdiction applies",
    "selector": "who is addressed: a selector in its JSON or text form (docs/selectors.md)",
    "client_msg_id": "the client's id for this create (A-Z a-z 0-9 _ . : -, 1-64): a retry with the same id "
    "gets the first answer, nothing is stored twice",
    "title": "shown in lists and notifications",
    "body": "the text (plain; code points counted)",
    "attachments": "sha256 digests of files uploaded first (POST /api/v1/uploads)",
    "person_id": "a person's id",
    "position_id": "a position's id",
    "unit": "a unit's code (330802) or #id (#17); in a JSON body also its integer id (docs/selectors.md)",
    "parent": "a unit's code (330802), #id (#17) or integer id",
    "into": "a unit's code (330802), #id (#17) or integer id",
    "category": "a task category key (GET /api/v1/tasks/categories)",
}
_FIELD = re.compile(r"^\s+(\w+)\s*:")
_COMMENT = re.compile(r"^\s+#:\s?(.*)$")


@cache
def _comments(cls: type[BaseModel]) -> dict[str, str]:
    try:
        lines, _ = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    pending: list[str] = []
    for line in lines[1:]:
        if m := _COMMENT.match(line):
            pending.append(m.group(1).strip())
        elif (m := _FIELD.match(line)) and pending:
            out[m.group(1)] = " ".join(pending)
            pending = []
        else:
            pending = []
    return out


def _models(annotation: Any, seen: set[type[BaseModel]]) -> None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in seen:
            return
        seen.add(annotation)
        for field in annotation.model_fields.values():
            _models(field.annotation, seen)
        return
    for arg in get_args(annotation):
        _models(arg, seen)


def describe(model: type[BaseModel], schemas: dict[str, Any], *, request: bool = False) -> None:
    """Fill missing property descriptions of ``model``'s schemas (by class name) from ``#:`` comments.

    For request bodies (``request``), the recurring fields also get their :data:`COMMON` meaning.
    """
    seen: set[type[BaseModel]] = set()
    _models(model, seen)
    for cls in seen:
        schema = schemas.get(cls.__name__)
        if not schema:
            continue
        for name, text in {**{k: v for b in cls.__mro__[1:] if isinstance(b, type) and issubclass(b, BaseModel)
                               for k, v in _comments(b).items()}, **_comments(cls)}.items():  # fmt: skip
            prop = schema.get("properties", {}).get(name)
            if prop is not None and not prop.get("description"):
                prop["description"] = text
        for name, prop in schema.get("properties", {}).items() if request else ():
            if name in COMMON and not prop.get("description"):
                prop["description"] = COMMON[name]
