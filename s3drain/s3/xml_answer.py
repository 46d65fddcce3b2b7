"""An S3 answer's XML document, read by the standard library's C parser for the requests sent
directly (`list_xml.py`, `delete_xml.py`)."""

from __future__ import annotations

from xml.etree import ElementTree

__all__ = ["UnreadableAnswer", "read_xml"]


class UnreadableAnswer(ValueError):
    """The answer is not the document the request asks for."""


def read_xml(body: bytes) -> tuple[ElementTree.Element, str]:
    """The document's root and its namespace as a tag prefix (`{...}`, or "" without one)."""
    # S3 never sends a DTD, and without one no entity can expand or reach out; in an answer
    # "<!" outside a CDATA section can only be markup (a key's "<" is escaped).
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise UnreadableAnswer("a DTD in the answer")
    try:
        root = ElementTree.fromstring(body)  # noqa: S314 - no DTD (checked above)
    except ElementTree.ParseError as exc:
        raise UnreadableAnswer(f"not XML ({exc})") from None
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    return root, ns
