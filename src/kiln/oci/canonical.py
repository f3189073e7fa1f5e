"""The JSON bytes kiln writes for manifests, indexes and configs.

Whatever bytes are hashed are the bytes written and pushed: objects are serialised once, with sorted keys and no
insignificant whitespace, and the bytes are passed around from then on rather than re-serialised.
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def load_json_object(data: bytes, what: str) -> dict[str, Any]:
    from kiln.errors import ImageFormatError

    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageFormatError(f"{what}: not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ImageFormatError(f"{what}: expected a JSON object")
    return obj
