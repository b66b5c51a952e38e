"""Type checks for one manifest row's fields: every value is what its field needs, or a message.

JSON, CSV and Parquet hand over different Python types (a JSON `NaN`, a pandas-made float NaN, a
bool, a nested dict, an int64 column); none of them may turn silently into the text "nan",
"True" or "{'a': 1}". Each check returns (value, problem), problem None when the value is good.
"""

from __future__ import annotations

import math
import re
from typing import Any

# An id names files (<id>.png, <id>.png.tmp, work/gt/<id>-s<k>.png): it must be a valid file name on
# Linux, macOS and Windows, and short enough that those derived names stay under the 255-byte limit.
MAX_ID_CHARS = 128
MAX_ID_BYTES = 200
_FORBIDDEN_ID_CHARS = set('<>:"/\\|?*') | {chr(c) for c in range(32)} | {"\x7f"}
_WINDOWS_RESERVED = re.compile(r"(?i)^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$")


def _type_name(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return type(value).__name__


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def text_field(name: str, value: Any, allow_int: bool = False) -> tuple[str | None, str | None]:
    """A string field: stripped text or None when empty; ints only where `allow_int` (ids, identities)."""
    if _is_missing(value):
        return None, None
    if isinstance(value, str):
        return value.strip(), None
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value), None
    if hasattr(value, "item") and not isinstance(value, (list, dict)):  # numpy scalars from Parquet / pandas
        return text_field(name, value.item(), allow_int)
    kind = "a string or an integer" if allow_int else "a string"
    return None, f"{name} must be {kind}, got {_type_name(value)} {_short(value)}"


def id_problem(rid: str) -> str | None:
    """Why `rid` cannot name a file on every OS, or None."""
    if len(rid) > MAX_ID_CHARS or len(rid.encode("utf-8")) > MAX_ID_BYTES:
        return (f"id is too long ({len(rid)} characters, {len(rid.encode('utf-8'))} bytes; at most "
                f"{MAX_ID_CHARS} characters and {MAX_ID_BYTES} bytes: it names the edited file)")
    bad = sorted({c for c in rid if c in _FORBIDDEN_ID_CHARS})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return f"id may not contain {shown} (it names the edited file; not allowed in file names on every OS)"
    if rid.startswith("."):
        return "id may not start with '.' (it names the edited file; a hidden file)"
    if rid.endswith((" ", ".")):
        return "id may not end with a space or '.' (Windows drops them from file names)"
    if _WINDOWS_RESERVED.match(rid):
        return f"id {rid!r} is a reserved device name on Windows (it names the edited file)"
    return None


def actions_field(value: Any) -> tuple[list[str] | None, str | None]:
    """`actions`: a list of strings, or one string of names separated by ';'."""
    if _is_missing(value):
        return None, None
    if isinstance(value, str):
        return [a.strip() for a in value.split(";") if a.strip()] or None, None
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):  # numpy arrays from Parquet / pandas
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        bad = [v for v in value if not isinstance(v, str)]
        if bad:
            return None, (f"actions must be a list of strings (or 'a; b' text), got an item of type "
                          f"{_type_name(bad[0])} {_short(bad[0])}")
        return [a.strip() for a in value if a.strip()] or None, None
    return None, f"actions must be a list of strings (or 'a; b' text), got {_type_name(value)} {_short(value)}"


def meta_field(value: Any) -> tuple[dict[str, Any] | None, str | None]:
    """`meta`: a mapping, or a JSON object as text (CSV)."""
    import json

    if _is_missing(value):
        return None, None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            return None, f"meta is not valid JSON ({exc.msg} at column {exc.colno})"
    if isinstance(value, dict):
        return value, None
    return None, f"meta must be a JSON object, got {_type_name(value)} {_short(value)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
