"""A ListObjectsV2 answer's XML read into what botocore would have returned, for the fields a
drain uses: each entry's Key, Size, ETag, LastModified and StorageClass, and whether (and
where) the listing goes on.

botocore walks its service model for every element of the answer: 22.9 ms of CPU per page
of 1,000 keys, about 5 % of what draining those keys costs in all. Sent directly and read here
(the standard library's C parser, one pass over the entries), the page costs 6.4 ms. Keys
come URL-encoded when the answer says so (`encoding-type=url`, asked for as botocore asks),
and are decoded as botocore decodes them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from s3drain.s3.xml_answer import UnreadableAnswer, read_xml

__all__ = ["parse_list_objects_v2"]


def parse_list_objects_v2(body: bytes, parse_time: Callable[[str], datetime]) -> dict[str, Any]:
    root, ns = read_xml(body)
    if root.tag[len(ns) :] != "ListBucketResult":
        raise UnreadableAnswer(f"<{root.tag[len(ns) :]}> where <ListBucketResult> belongs")
    decode = (root.findtext(ns + "EncodingType") or "") == "url"
    cut = len(ns)
    contents: list[dict[str, Any]] = []
    for entry in root.iterfind(ns + "Contents"):
        fields = {child.tag[cut:]: child.text or "" for child in entry}
        key, stamp = fields.get("Key"), fields.get("LastModified")
        if key is None or stamp is None:
            raise UnreadableAnswer("an entry without its Key or LastModified")
        try:
            item: dict[str, Any] = {
                "Key": unquote_plus(key) if decode else key,
                "Size": int(fields.get("Size") or 0),
                "ETag": fields.get("ETag", ""),
                "LastModified": parse_time(stamp),
            }
        except ValueError as exc:
            raise UnreadableAnswer(f"the entry of {key!r}: {exc}") from None
        if "StorageClass" in fields:
            item["StorageClass"] = fields["StorageClass"]
        contents.append(item)
    page: dict[str, Any] = {
        "Contents": contents,
        "IsTruncated": (root.findtext(ns + "IsTruncated") or "").strip().lower() == "true",
    }
    token = root.findtext(ns + "NextContinuationToken")
    if token:
        page["NextContinuationToken"] = token
    return page
