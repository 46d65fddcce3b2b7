"""The invariant checker on hand-made observations: it must catch every way of losing an object,
and stay quiet when nothing was lost. (A checker that never complains proves nothing.)"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from tests.faults.corpus import PREFIX, hostile_keys
from tests.faults.harness import KillPlan, Local, created_outside, read_audit
from tests.faults.invariant import (
    AuditLine,
    FileSeen,
    Kind,
    Observation,
    Site,
    Stored,
    Text,
    Version,
    check,
    lost_objects,
    partial_files,
)

RAW = "/base/raw"
PROCESSED = "/base/processed"


def version(key: str, data: bytes) -> Version:
    return Version(key, hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest(), len(data))


def file_of(path: str, data: bytes) -> FileSeen:
    return FileSeen(path, hashlib.sha256(data).hexdigest(), len(data))


def deleted(v: Version, path: str | None) -> AuditLine:
    return AuditLine(v.key, v.md5, "downloaded", True, path)


A = version(f"{PREFIX}a.csv", b"alpha")
B = version(f"{PREFIX}sub/b.csv", b"bravo!")


def site(
    files: tuple[FileSeen, ...] = (), audit: tuple[AuditLine, ...] = (), **more: object
) -> Site:
    return Site(raw=RAW, processed=PROCESSED, prefix=PREFIX, files=files, audit=audit, **more)  # type: ignore[arg-type]


def drained(v: Version, data: bytes, rel: str) -> tuple[FileSeen, AuditLine]:
    path = f"{RAW}/{rel}"
    return file_of(path, data), deleted(v, path)


def observation(*sites: Site, bucket: tuple[Stored, ...] = (), **more: object) -> Observation:
    return Observation(before=(A, B), bucket=bucket, sites=sites, **more)  # type: ignore[arg-type]


def stored(v: Version) -> Stored:
    return Stored(v.key, v.md5, v.size)


def kinds(obs: Observation) -> list[Kind]:
    return [v.kind for v in check(obs)]


def test_untouched_bucket_is_fine() -> None:
    assert check(observation(site(), bucket=(stored(A), stored(B)))) == []


def test_drained_with_copy_and_audit_is_fine() -> None:
    fa, la = drained(A, b"alpha", "a.csv")
    fb, lb = drained(B, b"bravo!", "sub/b.csv")
    assert check(observation(site((fa, fb), (la, lb)))) == []


def test_processed_copy_counts_as_kept() -> None:
    path = f"{PROCESSED}/a.csv"
    obs = observation(
        site((file_of(path, b"alpha"),), (deleted(A, path),), placed={path: A.sha256}),
        bucket=(stored(B),),
    )
    assert check(obs) == []


def test_gone_without_copy_is_lost() -> None:
    obs = observation(site(), bucket=(stored(B),))
    assert kinds(obs) == [Kind.LOST]
    assert lost_objects(check(obs)) == 1


def test_audit_claim_over_wrong_bytes_is_lost() -> None:
    path = f"{RAW}/a.csv"
    obs = observation(site((file_of(path, b"alphX"),), (deleted(A, path),)), bucket=(stored(B),))
    assert Kind.LOST in kinds(obs) and Kind.PARTIAL in kinds(obs)


def test_copy_without_audit_line() -> None:
    fa, _ = drained(A, b"alpha", "a.csv")
    obs = observation(site((fa,)), bucket=(stored(B),))
    assert kinds(obs) == [Kind.UNAUDITED]
    # Right after a kill the ledger may still owe that line: not yet a violation...
    owed = frozenset({(A.key, A.md5)})
    assert check(replace(obs, settled=False, in_flight=owed)) == []
    # ...but only where the ledger says so: of that version, not another, and not once settled.
    assert kinds(replace(obs, settled=False)) == [Kind.UNAUDITED]
    assert kinds(replace(obs, settled=False, in_flight=frozenset({(A.key, B.md5)}))) == [
        Kind.UNAUDITED
    ]
    assert kinds(replace(obs, in_flight=owed)) == [Kind.UNAUDITED]


def test_claim_while_still_in_s3() -> None:
    fa, la = drained(A, b"alpha", "a.csv")
    assert kinds(observation(site((fa,), (la,)), bucket=(stored(A), stored(B)))) == [
        Kind.FALSE_CLAIM
    ]


def test_partial_and_temp_files() -> None:
    partial = file_of(f"{RAW}/a.csv", b"alp")
    temp = file_of(f"{RAW}/sub/.s3drain-0123.part", b"bra")
    obs = observation(site((partial, temp)), bucket=(stored(A), stored(B)))
    assert sorted(kinds(obs)) == sorted([Kind.PARTIAL, Kind.TEMP_LEFT])
    assert partial_files(check(obs)) == 1
    assert kinds(replace(obs, settled=False)) == [Kind.PARTIAL]


def test_planted_stale_temp_must_be_swept() -> None:
    temp = f"{RAW}/.s3drain-9999.part"
    obs = observation(
        site((file_of(temp, b"x"),), placed={temp: file_of(temp, b"x").sha256}),
        bucket=(stored(A), stored(B)),
    )
    assert kinds(obs) == [Kind.TEMP_LEFT]


def test_placed_files_must_stay_as_they_were() -> None:
    mine = f"{PROCESSED}/etl-output.csv"
    odd = f"{RAW}/odd.bin"
    placed = {mine: file_of(mine, b"etl").sha256, odd: file_of(odd, b"odd").sha256}
    obs = observation(site((file_of(odd, b"ODD"),), placed=placed), bucket=(stored(A), stored(B)))
    assert sorted(v.detail for v in check(obs)) == [
        "a file s3drain does not own was changed",
        "a file s3drain does not own was removed",
    ]


def test_stray_files() -> None:
    stray = file_of(f"{RAW}/nobody.csv", b"?")
    written = file_of(f"{PROCESSED}/sub/b.csv", b"bravo!")
    obs = observation(site((stray, written)), bucket=(stored(A), stored(B)))
    assert kinds(obs) == [Kind.STRAY, Kind.STRAY]


def test_overwritten_object() -> None:
    newer = version(A.key, b"ALPHA")
    fa, _ = drained(A, b"alpha", "a.csv")
    # The old version's bytes were downloaded; the delete was refused; the new one stays.
    kept = observation(site((fa,)), bucket=(stored(newer), stored(B)), written=(newer,))
    assert check(kept) == []
    assert check(replace(kept, newest_must_stay=True)) == []
    # A delete that took the new version loses it.
    lost = observation(site((fa,)), bucket=(stored(B),), written=(newer,))
    assert Kind.OVERWRITE_LOST in kinds(lost)


def test_newest_drained_later_with_proof() -> None:
    newer = version(A.key, b"ALPHA")
    path = f"{RAW}/a.csv"
    obs = observation(
        site((file_of(path, b"ALPHA"),), (deleted(newer, path),)),
        bucket=(stored(B),),
        written=(newer,),
    )
    assert check(obs) == []
    assert Kind.OVERWRITE_LOST in kinds(replace(obs, newest_must_stay=True))


def test_files_an_etl_took_count_as_kept_and_must_have_been_complete() -> None:
    """The watch trials: an ETL renames files out of raw/ while s3drain runs; each is
    recorded under the path it had there."""
    newer = version(A.key, b"ALPHA")
    path = f"{RAW}/a.csv"
    took = (file_of(path, b"alpha"), file_of(path, b"ALPHA"))
    lines = (deleted(A, path), deleted(newer, path))
    # Both versions delivered to one path and taken from it in turn: nothing lost.
    obs = observation(site(audit=lines, taken=took), bucket=(stored(B),), written=(newer,))
    assert check(obs) == []
    # Without the ETL's record the older version's bytes are nowhere: lost.
    assert kinds(replace(obs, sites=(site(audit=lines, taken=took[1:]),))) == [Kind.LOST]
    # A partial file under a real name is one even after the ETL took it.
    half = site(audit=lines, taken=(file_of(path, b"alp"), took[1]))
    assert sorted(kinds(replace(obs, sites=(half,)))) == [Kind.LOST, Kind.PARTIAL]


def test_newest_version_drained_by_a_killed_run_awaits_its_line() -> None:
    """A watcher drains new versions too: right after a kill the newest version of an
    overwritten key may be gone with its bytes kept and its audit line owed (the ledger
    says so); settled, or not named by the ledger, it is a violation."""
    newer = version(A.key, b"ALPHA")
    fa = file_of(f"{RAW}/a.csv", b"ALPHA")
    obs = observation(site((fa,)), bucket=(stored(B),), written=(newer,))
    owed = frozenset({(A.key, newer.md5)})
    assert check(replace(obs, settled=False, in_flight=owed)) == []
    assert Kind.OVERWRITE_LOST in kinds(replace(obs, settled=False))
    assert Kind.OVERWRITE_LOST in kinds(replace(obs, in_flight=owed))


def test_foreign_content() -> None:
    obs = observation(site(), bucket=(Stored(A.key, "f" * 32, 5), stored(B)))
    assert Kind.FOREIGN in kinds(obs)


def test_outside_and_secrets() -> None:
    secret = "very-secret-value"
    obs = observation(
        site(),
        bucket=(stored(A), stored(B)),
        created_outside=("/base/escape.bin",),
        texts=(Text("run stderr", f"oops {secret}"), Text("audit", "clean")),
        secrets=(secret,),
    )
    found = check(obs)
    assert [v.kind for v in found] == [Kind.OUTSIDE, Kind.SECRET]
    assert all(secret not in str(v) for v in found)


def test_created_outside_allows_only_the_three_folders(tmp_path: Path) -> None:
    local = Local(tmp_path / "base")
    allowed = {
        str(local.base),
        f"{local.raw}/x",
        f"{local.state}/audit.jsonl",
        str(local.processed),
    }
    sneaky = {str(local.base / "escape.bin"), str(tmp_path / "b.bin"), f"{local.base}/rawfake"}
    found = created_outside(frozenset(), frozenset(allowed | sneaky), [local], ())
    assert set(found) == sneaky


def test_read_audit_counts_torn_lines(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    good = '{"key": "k", "etag": "e", "status": "downloaded", "deleted": true, "local_path": null}'
    log.write_text(f'{good}\n{{"key": "half\n{good}\n{{"torn')
    lines, torn = read_audit(log)
    assert len(lines) == 2 and torn == 2


def test_hostile_long_keys_are_exactly_1024_bytes() -> None:
    long_ones = [h for h in hostile_keys("m") if "1024" in h.why]
    assert len(long_ones) == 3
    assert all(len((PREFIX + h.rel).encode()) == 1024 for h in long_ones)


@pytest.mark.parametrize(
    ("plan", "text"),
    [
        (KillPlan(0.25), "kill at 250 ms"),
        (KillPlan(0.01, op="GetObject", nth=7), "kill 10 ms after GetObject #7"),
    ],
)
def test_kill_plan_reads_well(plan: KillPlan, text: str) -> None:
    assert str(plan) == text
