"""DeleteObjects' XML both ways, for the deletes sent directly (`drain/direct_deletes.py`):
the request body byte for byte as botocore builds it, and the answer read into botocore's
`Deleted` and `Errors` lists.

botocore serialises the body with ElementTree from its service model and parses the answer
the same way: for a batch of 250 keys about as much CPU as 250 small objects' GETs take in
`direct.py`. Here the body is joined from escaped strings and the answer read by the standard
library's C parser. Whether the body is botocore's own is checked once per run, before any
delete goes this way (`direct_target.delete_form`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from s3drain.s3.xml_answer import UnreadableAnswer, read_xml

__all__ = ["ErrorDocument", "delete_body", "parse_delete_result"]

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
# An object identifier's members in the order of botocore's model (ObjectIdentifier).
_MEMBERS = ("Key", "VersionId", "ETag")


def _text(value: str) -> str:
    """As ElementTree escapes text, then as botocore escapes line breaks over the whole body
    (`handlers.escape_xml_payload`: a parser would otherwise turn a key's CR into LF)."""
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value.replace("\r", "&#xD;").replace("\n", "&#xA;")


def delete_body(objects: Sequence[Mapping[str, str]], quiet: bool) -> bytes:
    parts = [f'<Delete xmlns="{NAMESPACE}">']
    for identifier in objects:
        if set(identifier) - set(_MEMBERS):
            raise ValueError(f"not an object identifier: {sorted(identifier)}")
        parts.append("<Object>")
        for name in _MEMBERS:
            if name in identifier:
                parts.append(f"<{name}>{_text(identifier[name])}</{name}>")
        parts.append("</Object>")
    parts.append(f"<Quiet>{'true' if quiet else 'false'}</Quiet></Delete>")
    return "".join(parts).encode("utf-8")


def parse_delete_result(body: bytes) -> dict[str, Any]:
    """{"Deleted": [{Key, VersionId, DeleteMarker, DeleteMarkerVersionId}], "Errors": [{Key,
    VersionId, Code, Message}]}, each with the fields the answer has. An `<Error>` document
    (S3 can answer 200 and fail) raises `ErrorDocument`."""
    root, ns = read_xml(body)
    cut = len(ns)
    name = root.tag[cut:]
    if name == "Error":
        error = {child.tag[cut:]: child.text or "" for child in root}
        raise ErrorDocument(error.get("Code") or "Error", error.get("Message", ""))
    if name != "DeleteResult":
        raise UnreadableAnswer(f"<{name}> where <DeleteResult> belongs")
    deleted: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for entry in root:
        kind = entry.tag[cut:]
        fields: dict[str, Any] = {child.tag[cut:]: child.text or "" for child in entry}
        if "Key" not in fields:
            raise UnreadableAnswer(f"a <{kind}> without its Key")
        if kind == "Deleted":
            if "DeleteMarker" in fields:
                fields["DeleteMarker"] = fields["DeleteMarker"].strip().lower() == "true"
            deleted.append(fields)
        elif kind == "Error":
            errors.append(fields)
    return {"Deleted": deleted, "Errors": errors}


class ErrorDocument(Exception):
    """A 200 answer that is an S3 error document."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
