"""Which listed objects this run takes: glob rules, minimum age and shard. Pure predicates."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FilterRule:
    include: bool
    pattern: str
    regex: re.Pattern[str]


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based, so Kubernetes' JOB_COMPLETION_INDEX and Airflow's map_index fit as-is
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def compile_rule(pattern: str, *, include: bool) -> FilterRule:
    """Glob -> regex. `*` and `?` stay inside one folder, `**` crosses folders.

    A pattern without `/` matches the object's name in any folder (`*.csv`); a pattern with `/` is
    matched against the whole path below the prefix (`2024/*/part-*.csv`).
    """
    if not pattern or "\x00" in pattern:
        raise ValueError(f"{pattern!r} is not a usable pattern")
    body = _glob_to_regex(pattern.lstrip("/") if "/" in pattern else pattern)
    anchored = f"^{body}$" if "/" in pattern else f"^(?:.*/)?{body}$"
    return FilterRule(include=include, pattern=pattern, regex=re.compile(anchored, re.DOTALL))


def _glob_to_regex(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")  # zero or more folders: `a/**/b.csv` matches `a/b.csv`
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                inner = pattern[i + 1 : end]
                negate = inner.startswith(("!", "^"))
                # A class never matches '/': like `?`, it stays inside one folder.
                inner = (inner[1:] if negate else inner).replace("/", "").replace("\\", "\\\\")
                out.append(f"[^/{inner}]" if negate else f"[{inner}]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def rules_accept(
    rules: Sequence[FilterRule], rel_path: str, matched: set[int] | None = None
) -> bool:
    """The first rule that matches decides; when none does, the path is taken unless the rules
    contain an --include (then only what an include names is taken). `matched` collects the
    index of each rule that decided something, so a rule that never did can be reported."""
    for index, rule in enumerate(rules):
        if rule.regex.match(rel_path):
            if matched is not None:
                matched.add(index)
            return rule.include
    return not any(rule.include for rule in rules)


def parse_shard(text: str) -> Shard:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None:
        raise ValueError(f"{text!r} is not K/N (for example 0/4: the first of four shards)")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise ValueError(
            f"{text!r}: K must be 0 to N-1 and N at least 1 (shards are 0/N ... N-1/N)"
        )
    return Shard(index=index, count=count)


def in_shard(key: str, shard: Shard | None) -> bool:
    # CRC32 of the UTF-8 key: stable across hosts, Python versions and runs (unlike hash()).
    if shard is None or shard.count == 1:
        return True
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % shard.count == shard.index


def skip_reason(
    key: str,
    rel_path: str,
    age_seconds: float,
    *,
    rules: Sequence[FilterRule],
    min_age: float | None,
    shard: Shard | None,
    matched: set[int] | None = None,
) -> str | None:
    """Why this run does not take the object, or None when it does."""
    if not in_shard(key, shard):
        return f"belongs to another shard than {shard}"
    if rules and not rules_accept(rules, rel_path, matched):
        return "not taken by --include/--exclude"
    if min_age is not None and age_seconds < min_age:
        return f"younger than --min-age ({age_seconds:.0f}s old)"
    return None
