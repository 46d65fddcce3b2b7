"""The "nothing is lost" invariant, as a pure function of what a trial observed.

For every object that existed before the run, exactly one of:

- it is still in S3, unchanged (same key, same ETag); or
- a local file under the raw or processed folder holds exactly its bytes (by SHA-256) and the
  audit log records its deletion. (In the watch trials an ETL takes files away from raw/ while
  s3drain runs: a file it took counts as still there, and must have been complete.)

Besides: every overwritten object's newest version is still in S3 (or was itself drained by a
later run, with the same proof); no file outside the local base path was created; no partial
file is visible under a real name; no temp file survives a run that finished; credentials never
appear in any output or log. Right after a kill -9 (not `settled`), a temp file is allowed, and
so is an object gone from S3 with its bytes kept but no audit line yet - only if s3drain's
ledger names that version's delete as in flight or its audit line as owed (the next run writes
it).

Nothing here touches S3 or the disk: `harness.py` gathers an `Observation`, `check` returns the
violations (empty when the invariant holds). The checker deliberately does not import s3drain:
it judges the tool by the contract in the README, not by the tool's own helpers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

# The contract's temp-file name: hidden, `.s3drain-<anything>.part`, beside the target.
TEMP_PREFIX = ".s3drain-"
TEMP_SUFFIX = ".part"


class Kind(StrEnum):
    """What went wrong. LOST and PARTIAL are the two figures the chaos table leads with."""

    LOST = "lost"  # gone from S3 and no local copy proves it was kept
    PARTIAL = "partial"  # a file under a real name that is not a complete copy of its object
    UNAUDITED = "unaudited-delete"  # gone from S3, bytes kept, but no audit line says deleted
    FALSE_CLAIM = "false-delete-claim"  # the audit says deleted, yet S3 still holds it
    OVERWRITE_LOST = "overwrite-lost"  # a newer version written mid-run is not in S3
    FOREIGN = "foreign-content"  # S3 holds bytes at a key that the test never wrote
    STRAY = "stray-file"  # a file where no key maps, or in the processed folder
    TEMP_LEFT = "temp-left"  # a temp file survived a run that finished
    OUTSIDE = "outside"  # something was created outside the local base path
    TAMPERED = "tampered"  # a file the test placed (the ETL's) was removed or changed
    SECRET = "secret"  # a credential appeared in output or a log
    # Not the invariant itself, but what a scenario adds about the drain finishing its job.
    NOT_DRAINED = "not-drained"
    CRASH = "crash"
    # A watcher's: the queue is empty, yet an object whose event it held is still in S3 and
    # no audit line says why it was left there (its message was deleted unsettled).
    DROPPED = "dropped-event"


@dataclass(frozen=True)
class Version:
    """One object version the test wrote. Objects are written in one part, so the ETag is the
    MD5 of the bytes; the SHA-256 is what local files are compared with."""

    key: str
    md5: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Stored:
    """What S3 holds at a key after the run (the listing's view)."""

    key: str
    etag: str
    size: int


@dataclass(frozen=True)
class FileSeen:
    """A regular file under a raw or processed folder (absolute path, as the OS spells it)."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class AuditLine:
    key: str
    etag: str
    status: str
    deleted: bool
    local_path: str | None
    # A `changed` line saying this version left S3 while a killed run's delete of it was in
    # flight (a newer upload holds the key; S3 cannot say which came first): it accounts for
    # the version as honestly as S3 allows, without claiming a delete.
    left_s3: bool = False


@dataclass(frozen=True)
class Site:
    """One local base path: its folders, the files in them, and its audit log."""

    raw: str
    processed: str
    prefix: str
    files: tuple[FileSeen, ...]
    audit: tuple[AuditLine, ...]
    torn_audit_lines: int = 0
    # Files the test itself put there (the ETL's copies, odd names), path -> SHA-256: not
    # s3drain's doing, and not s3drain's to remove or change (stale temp files excepted).
    placed: Mapping[str, str] = field(default_factory=dict)
    # Files an ETL took away from raw/ while s3drain ran (the watch trials), each under the
    # path it had in raw/: a delivery as good as a file still there, and judged like one.
    taken: tuple[FileSeen, ...] = ()


@dataclass(frozen=True)
class Text:
    """Some output or log a trial produced, by name, to be searched for credentials."""

    name: str
    content: str


@dataclass(frozen=True)
class Observation:
    before: tuple[Version, ...]  # every object in the bucket before the first run
    bucket: tuple[Stored, ...]  # the bucket now
    sites: tuple[Site, ...]
    # Versions the test wrote during or between runs (overwrites), oldest first.
    written: tuple[Version, ...] = ()
    # Earlier versions that had already left S3 when the test wrote a newer one at their key:
    # the test did not remove those, so s3drain must account for them like any other.
    recreated: tuple[Version, ...] = ()
    created_outside: tuple[str, ...] = ()
    texts: tuple[Text, ...] = ()
    secrets: tuple[str, ...] = ()
    # False right after a kill -9: temp files may remain and a delete may still await its audit
    # line - but only one the ledger names as in flight or owed (`in_flight`, (key, ETag)
    # pairs); the next run settles both.
    settled: bool = True
    in_flight: frozenset[tuple[str, str]] = frozenset()
    # Right after the run during which the test overwrote objects: the newest version must be
    # in S3, full stop (that run listed only the older one).
    newest_must_stay: bool = False


@dataclass(frozen=True)
class Violation:
    kind: Kind
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.subject!r}: {self.detail}"


def is_temp_name(name: str) -> bool:
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def prefix_folder(prefix: str) -> str:
    """The folder keys are made relative to (README: `--prefix exports/2024` names things in
    `exports/`)."""
    return prefix[: prefix.rfind("/") + 1]


def mapped_paths(site: Site, key: str) -> tuple[str, ...]:
    """Where the README says a key's file lives: `<raw>/<rel>` and `<processed>/<rel>`."""
    folder = prefix_folder(site.prefix)
    if not key.startswith(folder):
        return ()
    rel = key[len(folder) :]
    return (os.path.join(site.raw, rel), os.path.join(site.processed, rel))


def key_for(site: Site, raw_path: str) -> str | None:
    """The key whose file would sit at this path under raw/, if any key could."""
    rel = os.path.relpath(raw_path, site.raw)
    if rel.startswith(".."):
        return None
    return prefix_folder(site.prefix) + rel


def check(obs: Observation) -> list[Violation]:
    """Every way the observation breaks the invariant; empty when it holds."""
    return [
        *_objects(obs),
        *_newest_versions(obs),
        *_foreign(obs),
        *_files(obs),
        *_outside(obs),
        *_secrets(obs),
    ]


def partial_files(violations: Iterable[Violation]) -> int:
    return sum(1 for v in violations if v.kind is Kind.PARTIAL)


def lost_objects(violations: Iterable[Violation]) -> int:
    """Distinct keys with a lost version (a lost newest version is often also 'lost')."""
    return len({v.subject for v in violations if v.kind in (Kind.LOST, Kind.OVERWRITE_LOST)})


def temp_files(obs: Observation) -> int:
    """Hidden temp files present (a killed run's leftovers): a figure, not a violation."""
    return sum(
        1 for site in obs.sites for f in site.files if is_temp_name(os.path.basename(f.path))
    )


# -- the objects ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Index:
    """Lookups the per-object rules share, built once per observation."""

    current: Mapping[str, Stored]
    files: Mapping[str, FileSeen]
    taken: Mapping[str, frozenset[str]]  # raw path -> SHA-256 of each file an ETL took there
    claims: Mapping[tuple[str, str], tuple[tuple[Site, AuditLine], ...]]
    departures: Mapping[tuple[str, str], tuple[tuple[Site, AuditLine], ...]]
    history: Mapping[str, tuple[Version, ...]]
    recreated: frozenset[Version]
    sites: tuple[Site, ...] = field(default=())

    @classmethod
    def build(cls, obs: Observation) -> _Index:
        claims: dict[tuple[str, str], list[tuple[Site, AuditLine]]] = {}
        departures: dict[tuple[str, str], list[tuple[Site, AuditLine]]] = {}
        for site in obs.sites:
            for line in site.audit:
                if line.deleted:
                    claims.setdefault((line.key, line.etag), []).append((site, line))
                elif line.left_s3:
                    departures.setdefault((line.key, line.etag), []).append((site, line))
        history: dict[str, list[Version]] = {}
        for version in (*obs.before, *obs.written):
            history.setdefault(version.key, []).append(version)
        taken: dict[str, set[str]] = {}
        for site in obs.sites:
            for took in site.taken:
                taken.setdefault(took.path, set()).add(took.sha256)
        return cls(
            current={s.key: s for s in obs.bucket},
            files={f.path: f for site in obs.sites for f in site.files},
            taken={path: frozenset(hashes) for path, hashes in taken.items()},
            claims={k: tuple(v) for k, v in claims.items()},
            departures={k: tuple(v) for k, v in departures.items()},
            history={k: tuple(v) for k, v in history.items()},
            recreated=frozenset(obs.recreated),
            sites=obs.sites,
        )

    def in_s3(self, version: Version) -> bool:
        stored = self.current.get(version.key)
        return stored is not None and stored.etag == version.md5

    def holds(self, path: str | None, version: Version) -> bool:
        """The file at `path` holds the version's bytes, or an ETL took such a file from it."""
        if path is None:
            return False
        seen = self.files.get(path)
        return (seen is not None and seen.sha256 == version.sha256) or (
            version.sha256 in self.taken.get(path, ())
        )

    def proven_claims(self, version: Version) -> list[AuditLine]:
        """Audit lines saying this version was deleted whose local copy holds its bytes."""
        proven = []
        for site, line in self.claims.get((version.key, version.md5), ()):
            candidates = (line.local_path, *mapped_paths(site, version.key))
            if any(self.holds(path, version) for path in candidates):
                proven.append(line)
        return proven

    def kept_locally(self, version: Version) -> bool:
        return any(
            self.holds(path, version)
            for site in self.sites
            for path in mapped_paths(site, version.key)
        )

    def superseded(self, version: Version) -> bool:
        """The test itself replaced this version with a newer one (while it was current)."""
        return self.history[version.key][-1] != version and version not in self.recreated


def _objects(obs: Observation) -> Iterator[Violation]:
    index = _Index.build(obs)
    for version in (*obs.before, *obs.written):
        in_flight = not obs.settled and (version.key, version.md5) in obs.in_flight
        violation = _judge(index, version, settled=obs.settled, in_flight=in_flight)
        if violation is not None:
            yield violation


def _judge(index: _Index, version: Version, *, settled: bool, in_flight: bool) -> Violation | None:
    claimed = bool(index.claims.get((version.key, version.md5)))
    if index.in_s3(version):
        if claimed:
            return Violation(
                Kind.FALSE_CLAIM, version.key, "the audit log says deleted; S3 still holds it"
            )
        return None
    if index.proven_claims(version):
        return None
    if claimed:
        return Violation(
            Kind.LOST,
            version.key,
            f"gone from S3; the audit says deleted but no local file holds its "
            f"{version.size} bytes",
        )
    if index.superseded(version):
        return None  # the test overwrote it; the newest version is judged on its own
    if index.kept_locally(version):
        if in_flight:
            return None  # a killed run's delete awaits its audit line (the ledger owes it)
        if index.departures.get((version.key, version.md5)):
            return None  # recorded as having left S3, its bytes kept (see AuditLine.left_s3)
        return Violation(
            Kind.UNAUDITED,
            version.key,
            "gone from S3 and its bytes are kept, but no audit line records the delete"
            + ("" if settled else ", and the ledger names no delete of it in flight"),
        )
    return Violation(Kind.LOST, version.key, "gone from S3 and no local copy of its bytes")


def _newest_versions(obs: Observation) -> Iterator[Violation]:
    """Every overwritten object's newest version is still in S3 (strictly right after the run
    that saw the overwrite; later, a clean run may have drained it with proof)."""
    index = _Index.build(obs)
    for key in sorted({v.key for v in obs.written}):
        newest = index.history[key][-1]
        if index.in_s3(newest):
            continue
        if not obs.newest_must_stay and index.proven_claims(newest):
            continue
        in_flight = not obs.settled and (key, newest.md5) in obs.in_flight
        if not obs.newest_must_stay and in_flight and index.kept_locally(newest):
            continue  # drained by a killed run whose audit line the ledger owes (see _judge)
        stored = index.current.get(key)
        now = f"S3 holds ETag {stored.etag}" if stored else "the key is gone"
        yield Violation(
            Kind.OVERWRITE_LOST,
            key,
            f"the newest version (ETag {newest.md5}) written mid-run is not in S3: {now}",
        )


def _foreign(obs: Observation) -> Iterator[Violation]:
    written = {(v.key, v.md5) for v in (*obs.before, *obs.written)}
    for stored in obs.bucket:
        if (stored.key, stored.etag) not in written:
            yield Violation(
                Kind.FOREIGN, stored.key, f"S3 holds ETag {stored.etag}, which no one wrote"
            )


# -- the files -----------------------------------------------------------------------------


def _files(obs: Observation) -> Iterator[Violation]:
    history: dict[str, set[str]] = {}
    for version in (*obs.before, *obs.written):
        history.setdefault(version.key, set()).add(version.sha256)
    for site in obs.sites:
        for seen in site.files:
            if seen.path not in site.placed:
                yield from _judge_file(site, seen, history, settled=obs.settled)
        for took in site.taken:
            # What the ETL saw under a real name in raw/ must have been a complete copy too.
            yield from _judge_file(site, took, history, settled=obs.settled)
        yield from _placed_files(site, settled=obs.settled)


def _placed_files(site: Site, *, settled: bool) -> Iterator[Violation]:
    """The test's own files stay as they were; a stale temp file it planted, as a killed run
    would, is swept by the next run."""
    present = {f.path: f.sha256 for f in site.files}
    for path, sha256 in site.placed.items():
        if is_temp_name(os.path.basename(path)):
            if settled and path in present:
                yield Violation(Kind.TEMP_LEFT, path, "a stale temp file was not removed")
        elif present.get(path) != sha256:
            what = "changed" if path in present else "removed"
            yield Violation(Kind.TAMPERED, path, f"a file s3drain does not own was {what}")


def _judge_file(
    site: Site, seen: FileSeen, history: Mapping[str, set[str]], *, settled: bool
) -> Iterator[Violation]:
    if _under(seen.path, site.processed):
        yield Violation(Kind.STRAY, seen.path, "s3drain wrote into the processed folder")
        return
    if is_temp_name(os.path.basename(seen.path)):
        if settled:
            yield Violation(Kind.TEMP_LEFT, seen.path, "a temp file survived a finished run")
        return
    key = key_for(site, seen.path)
    hashes = history.get(key) if key is not None else None
    if not hashes:
        yield Violation(Kind.STRAY, seen.path, "no object maps to this file")
    elif seen.sha256 not in hashes:
        yield Violation(
            Kind.PARTIAL,
            seen.path,
            f"{seen.size} bytes under a real name that match no version of {key!r}",
        )


def _under(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip("/") + "/")


def _outside(obs: Observation) -> Iterator[Violation]:
    for path in obs.created_outside:
        yield Violation(Kind.OUTSIDE, path, "created outside the local base path's folders")


def _secrets(obs: Observation) -> Iterator[Violation]:
    for number, secret in enumerate(obs.secrets, 1):
        for text in obs.texts:
            if secret and secret in text.content:
                # Never repeat the secret itself in a report.
                yield Violation(Kind.SECRET, text.name, f"credential #{number} appears in it")
