"""A model's JSON as bytes: what records and state stores hold."""

from __future__ import annotations

from pydantic import BaseModel


def json_bytes(model: BaseModel, *, exclude_none: bool = False) -> bytes:
    """Exactly ``model.model_dump_json(exclude_none=...).encode()``, without the detour
    through a str: pydantic writes UTF-8 bytes and ``model_dump_json`` decodes them, to be
    encoded again by every caller that sends or stores them (a case, a status event, a
    fact, a request: about a dozen per declaration)."""
    return model.__pydantic_serializer__.to_json(model, exclude_none=exclude_none)
