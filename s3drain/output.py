"""Text helpers both commands use for what they print: plurals, keys made safe for a terminal,
secrets masked, JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def printable(text: str) -> str:
    """A key as it may be shown on a terminal: control characters, line breaks and the like
    escaped (`\\x1b`, `\\n`), so a hostile key cannot move the cursor or fake a line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def mask(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "****")
    return text


def dumps_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=False)
