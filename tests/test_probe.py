"""The server probe (`s3/probe.py`) and the delete guard it leads to (`drain/guard.py`), against
in-process moto with scripted answers: what each kind of server makes the probe conclude, which
guard a run then uses, and the runs that must stop before anything changed.

Servers are emulated with `inject` rules on plain moto (which honours If-Match on DeleteObject
and ignores the per-key ETag of DeleteObjects) or moto patched to honour both
(`moto_aws_like.patched()`); the real servers are in test_servers_e2e.py.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from s3drain.drain.delete_requests import DeleteGuard
from s3drain.drain.guard import choose_guard
from s3drain.drain.settings import DrainSettings
from s3drain.errors import AbortError, ConfigError, ExitCode
from s3drain.s3.client import S3Client
from s3drain.s3.probe import PROBE_NAME, Answer, ProbeResult, probe
from s3drain.s3.retry import RetryPolicy
from tests.support import moto_aws_like
from tests.support.drainkit import (
    BUCKET,
    PREFIX,
    Call,
    Rule,
    audit_lines,
    bucket_keys,
    drain,
    drain_settings,
    error_response,
    header,
    inject,
    is_probe,
    local_tree,
    mock_aws,
    new_client,
    ok_response,
    put_objects,
)

RETRY = RetryPolicy(max_attempts=4, sleep=lambda _: None)
DELETES = ("DeleteObject", "DeleteObjects")


@dataclass
class Seen:
    """Every call the client made (operation, a probe's or not, its query), and an optional
    scripted answer: a `Rule` that returns None lets the call through to moto."""

    answer: Rule | None = None
    calls: list[tuple[str, bool, str]] = field(default_factory=list)

    def __call__(self, operation: str, call: Call) -> Any:
        self.calls.append((operation, is_probe(call), str(call.params.get("query_string"))))
        return self.answer(operation, call) if self.answer is not None else None

    def probes(self) -> list[str]:
        return [op for op, probing, _ in self.calls if probing]

    def changes(self) -> list[str]:
        """What could have changed something: a GET (a local file) or a delete of a real key."""
        return [
            op
            for op, probing, _ in self.calls
            if op == "GetObject" or (op in DELETES and not probing)
        ]


@pytest.fixture
def moto() -> Iterator[S3Client]:
    """moto, ETag-blind (as released up to 5.2.5): DeleteObject + If-Match honoured,
    DeleteObjects' ETag ignored."""
    with mock_aws():
        yield new_client()


@pytest.fixture
def aws_like() -> Iterator[S3Client]:
    """moto honouring both forms, as AWS documents."""
    with mock_aws(), moto_aws_like.patched():
        yield new_client()


def versioned(client: S3Client) -> S3Client:
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return client


def watch(client: S3Client, answer: Rule | None = None) -> Seen:
    seen = Seen(answer)
    inject(client, seen)
    return seen


def run_probe(client: S3Client) -> ProbeResult:
    return probe(client, BUCKET, PREFIX, RETRY)


# -- what servers make the probe say (scripted answers) ---------------------------------------


def strip_if_match(operation: str, call: Call) -> None:
    """A server that ignores If-Match on DeleteObject: the delete goes through unconditionally."""
    if operation == "DeleteObject":
        call.params["headers"].pop("If-Match", None)


def not_implemented_if_match(operation: str, call: Call) -> Any:
    """LocalStack: 501 to any DeleteObject that carries If-Match."""
    if operation == "DeleteObject" and header(call, "If-Match"):
        return error_response(501, "NotImplemented", "A header you provided is not implemented")
    return None


def missing_is_404(operation: str, call: Call) -> Any:
    """A server that answers 404 to any delete of a missing key, conditional or not (as Google
    Cloud Storage's XML API documents): a 404 then says nothing about the condition."""
    if operation == "DeleteObject" and is_probe(call):
        return error_response(404, "NoSuchKey")
    if operation == "DeleteObjects" and is_probe(call):
        key = _probe_key(call)
        return ok_response({"Errors": [{"Key": key, "Code": "NoSuchKey", "Message": "gone"}]})
    return None


def _probe_key(call: Call) -> str:
    body = call.params["body"]
    text = body.decode() if isinstance(body, bytes) else str(body)
    start = text.index("<Key>") + len("<Key>")
    return text[start : text.index("</Key>")]


@pytest.mark.parametrize(
    ("server", "rule", "want"),
    [
        ("aws-like", None, (Answer.HONOURED, Answer.HONOURED)),
        ("moto", None, (Answer.HONOURED, Answer.IGNORED)),
        ("moto", strip_if_match, (Answer.IGNORED, Answer.IGNORED)),
        ("moto", not_implemented_if_match, (Answer.NOT_IMPLEMENTED, Answer.IGNORED)),
        ("moto", missing_is_404, (Answer.INCONCLUSIVE, Answer.INCONCLUSIVE)),
    ],
    ids=["both-honoured", "single-only", "none-ignored", "not-implemented", "404-to-any-delete"],
)
def test_probe_answers(server: str, rule: Rule | None, want: tuple[Answer, Answer]) -> None:
    with mock_aws(), moto_aws_like.patched() if server == "aws-like" else contextlib.nullcontext():
        client = new_client()
        seen = watch(client, rule)
        result = run_probe(client)
        assert (result.delete_object_if_match, result.delete_objects_etag) == want
        # Only the probe's own random keys were touched.
        assert seen.probes() == [op for op, _, _ in seen.calls]
        assert bucket_keys(client) == set()


def test_a_404_counts_only_where_an_unconditional_delete_of_a_missing_key_succeeds() -> None:
    """moto: If-Match on a missing key is 404, and a plain delete of another missing key is
    204, so the 404 was the condition at work. The control delete is what tells it apart from
    the server above that answers 404 to everything."""
    with mock_aws():
        client = new_client()
        seen = watch(client)
        assert run_probe(client).delete_object_if_match is Answer.HONOURED
        singles = [query for op, _, query in seen.calls if op == "DeleteObject"]
        assert len(singles) == 2  # the conditional one, then the control


def test_a_transient_failure_of_the_probe_is_retried_then_answered(moto: S3Client) -> None:
    failures = {"DeleteObject": 2, "DeleteObjects": 1}

    def flaky(operation: str, call: Call) -> Any:
        if failures.get(operation, 0) > 0:
            failures[operation] -= 1
            return error_response(503, "SlowDown")
        return None

    seen = watch(moto, flaky)
    result = run_probe(moto)

    assert result.delete_object_if_match is Answer.HONOURED
    assert result.delete_objects_etag is Answer.IGNORED
    assert seen.probes().count("DeleteObject") == 2 + 2  # two 503s, the probe, its control
    assert seen.probes().count("DeleteObjects") == 1 + 1


def test_a_probe_that_keeps_failing_stops_the_run_before_anything_changed(
    tmp_path: Path, moto: S3Client
) -> None:
    put_objects(moto, {f"{PREFIX}a.csv": b"a"})
    seen = watch(moto, lambda op, call: error_response(503, "SlowDown") if op in DELETES else None)

    run = drain(drain_settings(tmp_path), moto)

    assert run.code == ExitCode.ABORTED and not run.result.started
    assert "cannot probe" in (run.result.info.error or "")
    assert "nothing was changed" in (run.result.info.error or "")
    assert seen.changes() == []
    assert bucket_keys(moto) == {f"{PREFIX}a.csv"}


@pytest.mark.parametrize("operation", DELETES)
def test_a_denied_probe_is_a_config_error_naming_the_permission(
    tmp_path: Path, moto: S3Client, operation: str
) -> None:
    put_objects(moto, {f"{PREFIX}a.csv": b"a"})
    seen = watch(
        moto, lambda op, call: error_response(403, "AccessDenied") if op == operation else None
    )

    with pytest.raises(ConfigError) as raised:
        run_probe(moto)
    assert "s3:DeleteObject" in raised.value.message and "--no-delete" in raised.value.message

    run = drain(drain_settings(tmp_path), moto)
    assert run.code == 2 and not run.result.started  # ExitCode.USAGE
    assert "s3:DeleteObject" in (run.result.info.error or "")
    assert "--no-delete" in (run.result.info.error or "")
    assert seen.changes() == []
    assert bucket_keys(moto) == {f"{PREFIX}a.csv"}
    assert local_tree(tmp_path / "raw") == {}


def test_a_denied_control_delete_is_a_config_error_too(moto: S3Client) -> None:
    """The conditional DeleteObjects answers NoSuchKey for its key (as AWS may); the
    unconditional control that must tell what that 404 means is denied per key: a missing
    permission, not an inconclusive server."""

    def answer(operation: str, call: Call) -> Any:
        if operation != "DeleteObjects" or not is_probe(call):
            return None
        body = call.params["body"]
        text = body.decode() if isinstance(body, bytes) else str(body)
        code = "NoSuchKey" if "<ETag>" in text else "AccessDenied"
        return ok_response({"Errors": [{"Key": _probe_key(call), "Code": code, "Message": "x"}]})

    inject(moto, answer)
    with pytest.raises(ConfigError, match="s3:DeleteObject"):
        run_probe(moto)


def test_an_ignored_probe_in_a_versioned_bucket_removes_exactly_its_delete_marker(
    moto: S3Client,
) -> None:
    """AWS (and LocalStack's DeleteObjects) write a delete marker when a delete of a missing key
    goes through: the probe removes it by the VersionId the answer names, and only it."""
    versioned(moto)

    def ignored_with_marker(operation: str, call: Call) -> Any:
        if operation == "DeleteObject" and header(call, "If-Match"):
            return ok_response({"DeleteMarker": True, "VersionId": "marker-of-single"})
        if operation == "DeleteObjects" and "<ETag>" in call.params["body"].decode():
            key = _probe_key(call)
            deleted = {"Key": key, "DeleteMarker": True, "DeleteMarkerVersionId": "marker-of-batch"}
            return ok_response({"Deleted": [deleted]})
        if operation == "DeleteObject" and "versionId" in str(call.params.get("query_string")):
            return ok_response({})
        return None

    seen = watch(moto, ignored_with_marker)
    result = run_probe(moto)

    assert (result.delete_object_if_match, result.delete_objects_etag) == (
        Answer.IGNORED,
        Answer.IGNORED,
    )
    removals = sorted(query for op, _, query in seen.calls if "versionId" in query)
    assert removals == [
        str({"versionId": "marker-of-batch"}),
        str({"versionId": "marker-of-single"}),
    ]


def test_a_probe_delete_marker_that_cannot_be_removed_is_a_clear_error(
    tmp_path: Path, moto: S3Client
) -> None:
    """Credentials with s3:DeleteObject but not s3:DeleteObjectVersion: the probe's marker stays.
    The run must say so and stop before anything changed, not crash (exit 70)."""
    versioned(moto)
    put_objects(moto, {f"{PREFIX}a.csv": b"a"})

    def marker_then_denied(operation: str, call: Call) -> Any:
        if not is_probe(call):
            return None
        if operation == "DeleteObject" and header(call, "If-Match"):
            return ok_response({"DeleteMarker": True, "VersionId": "marker-of-single"})
        if operation == "DeleteObject" and "versionId" in str(call.params.get("query_string")):
            return error_response(403, "AccessDenied")
        return None

    seen = watch(moto, marker_then_denied)
    run = drain(drain_settings(tmp_path), moto)

    assert run.code == ExitCode.USAGE and not run.result.started, run.result.info.error
    error = run.result.info.error or ""
    assert "s3:DeleteObjectVersion" in error and PROBE_NAME in error
    assert seen.changes() == []
    assert bucket_keys(moto) == {f"{PREFIX}a.csv"}


# -- the guard each answer leads to, on a real (in-process) run -------------------------------


@dataclass(frozen=True)
class Case:
    server: str
    rule: Rule | None
    versioned: bool
    guard: DeleteGuard


GUARD_CASES = {
    "both-honoured": Case("aws-like", None, False, DeleteGuard.ETAG_BATCH),
    "single-only": Case("moto", None, False, DeleteGuard.IF_MATCH),
    "none-versioned": Case("moto", strip_if_match, True, DeleteGuard.VERSION_ID),
    "none-unversioned": Case("moto", strip_if_match, False, DeleteGuard.HEAD_CHECKED),
    "not-implemented-unversioned": Case(
        "moto", not_implemented_if_match, False, DeleteGuard.HEAD_CHECKED
    ),
    "not-implemented-versioned": Case(
        "moto", not_implemented_if_match, True, DeleteGuard.VERSION_ID
    ),
    "404-to-any-delete": Case("moto", missing_is_404, False, DeleteGuard.HEAD_CHECKED),
}


@contextlib.contextmanager
def server(case: Case) -> Iterator[S3Client]:
    with (
        mock_aws(),
        moto_aws_like.patched() if case.server == "aws-like" else contextlib.nullcontext(),
    ):
        client = new_client()
        if case.versioned:
            versioned(client)
        yield client


@pytest.mark.parametrize("name", sorted(GUARD_CASES))
def test_each_probe_answer_picks_its_guard_and_the_run_drains(tmp_path: Path, name: str) -> None:
    case = GUARD_CASES[name]
    objects = {f"{PREFIX}{i}.csv": f"body {i}".encode() for i in range(3)}
    with server(case) as client:
        put_objects(client, objects)
        seen = watch(client, case.rule)
        settings = drain_settings(tmp_path)

        run = drain(settings, client)

        assert run.code == ExitCode.OK, run.err
        assert run.result.info.delete_guard == case.guard.value
        lines = audit_lines(settings)
        assert {line["delete_guard"] for line in lines} == {case.guard.value}
        assert all(line["deleted"] and line["status"] == "downloaded" for line in lines)
        assert bucket_keys(client) == set()
        assert local_tree(settings.raw_dir) == {k[len(PREFIX) :]: v for k, v in objects.items()}
        heads = [op for op, probing, _ in seen.calls if op == "HeadObject"]
        if case.guard is DeleteGuard.HEAD_CHECKED:
            assert len(heads) == len(objects)  # one HEAD right before each delete
            assert run.err.count("narrows the race") == 1  # said once per run, not per object
        else:
            assert heads == []
        if case.guard is DeleteGuard.VERSION_ID:
            assert all(line["detail"].endswith("removed for good") for line in lines)
            assert "remove that version for good" in run.err
            versions = client.list_object_versions(Bucket=BUCKET)
            assert versions.get("Versions", []) == [] and versions.get("DeleteMarkers", []) == []


def test_choose_guard_from_answers(tmp_path: Path) -> None:
    """The table of guard.py, straight: the probe's answers and versioning -> the guard."""
    settings = drain_settings(tmp_path)
    h, i, n, x = Answer.HONOURED, Answer.IGNORED, Answer.NOT_IMPLEMENTED, Answer.INCONCLUSIVE
    table = {
        (h, h, False): DeleteGuard.ETAG_BATCH,
        (h, h, True): DeleteGuard.ETAG_BATCH,
        (i, h, False): DeleteGuard.ETAG_BATCH,
        (h, i, False): DeleteGuard.IF_MATCH,
        (h, x, True): DeleteGuard.IF_MATCH,
        (i, i, True): DeleteGuard.VERSION_ID,
        (n, i, True): DeleteGuard.VERSION_ID,
        (x, x, True): DeleteGuard.VERSION_ID,
        (i, i, False): DeleteGuard.HEAD_CHECKED,
        (n, i, False): DeleteGuard.HEAD_CHECKED,
        (x, x, False): DeleteGuard.HEAD_CHECKED,
    }
    for (single, batch, is_versioned), guard in table.items():
        answers = ProbeResult(single, batch, probed_at=0.0)
        assert choose_guard(settings, answers, is_versioned).guard is guard, (single, batch)


# -- runs that must stop before anything changed -----------------------------------------------


def test_forced_batch_on_a_server_that_ignores_the_per_key_etag_changes_nothing(
    tmp_path: Path, moto: S3Client
) -> None:
    put_objects(moto, {f"{PREFIX}a.csv": b"a", f"{PREFIX}b.csv": b"b"})
    seen = watch(moto)

    run = drain(drain_settings(tmp_path, delete_mode="batch"), moto)

    assert run.code == ExitCode.USAGE and not run.result.started
    assert "--delete-mode batch" in (run.result.info.error or "")
    assert "DeleteObjects + ETag ignored" in (run.result.info.error or "")
    assert seen.changes() == []  # no GET, no delete of a real key
    assert bucket_keys(moto) == {f"{PREFIX}a.csv", f"{PREFIX}b.csv"}
    assert local_tree(tmp_path / "raw") == {}
    assert audit_lines(drain_settings(tmp_path)) == []


def test_forced_modes_the_server_honours_are_used(tmp_path: Path, aws_like: S3Client) -> None:
    for mode, guard in (("single", "if-match"), ("batch", "etag-batch")):
        put_objects(aws_like, {f"{PREFIX}{mode}.csv": mode.encode()})
        settings = drain_settings(tmp_path / mode, delete_mode=mode)
        run = drain(settings, aws_like)
        assert run.code == ExitCode.OK, run.err
        assert run.result.info.delete_guard == guard
        assert [line["delete_guard"] for line in audit_lines(settings)] == [guard]
    assert bucket_keys(aws_like) == set()


@pytest.mark.parametrize("is_versioned", [False, True], ids=["unversioned", "versioned"])
def test_require_exact_delete(tmp_path: Path, moto: S3Client, is_versioned: bool) -> None:
    """Neither form honoured: unversioned means head-checked, which is not exact (exit 2 before
    anything changed); versioned means version-id, which is."""
    if is_versioned:
        versioned(moto)
    put_objects(moto, {f"{PREFIX}a.csv": b"a"})
    seen = watch(moto, not_implemented_if_match)
    settings = drain_settings(tmp_path, require_exact_delete=True)

    run = drain(settings, moto)

    if is_versioned:
        assert run.code == ExitCode.OK, run.result.info.error
        assert run.result.info.delete_guard == "version-id"
        assert bucket_keys(moto) == set()
        return
    assert run.code == ExitCode.USAGE and not run.result.started
    error = run.result.info.error or ""
    assert "--require-exact-delete" in error and "head-checked" in error
    assert "nothing was changed" in error
    assert "versioning" in (run.result.hint or "")
    assert seen.changes() == []
    assert bucket_keys(moto) == {f"{PREFIX}a.csv"}
    assert local_tree(tmp_path / "raw") == {}


def test_require_exact_delete_passes_where_deletes_are_exact(
    tmp_path: Path, moto: S3Client
) -> None:
    put_objects(moto, {f"{PREFIX}a.csv": b"a"})
    run = drain(drain_settings(tmp_path, require_exact_delete=True), moto)
    assert run.code == ExitCode.OK and run.result.info.delete_guard == "if-match"


# -- the day-long cache --------------------------------------------------------------------------


def _age_probe_cache(settings: DrainSettings, seconds: float) -> None:
    with contextlib.closing(sqlite3.connect(settings.state_dir / "state.db")) as conn:
        conn.execute("UPDATE probes SET probed_at = probed_at - ?", (seconds,))
        conn.commit()


def test_the_probe_is_cached_a_day_and_probe_forces_a_new_one(
    tmp_path: Path, moto: S3Client
) -> None:
    settings = drain_settings(tmp_path)
    seen = watch(moto)

    put_objects(moto, {f"{PREFIX}1.csv": b"1"})
    first = drain(settings, moto)
    probes_first = len(seen.probes())
    assert first.code == ExitCode.OK and probes_first > 0
    assert "cached" not in (first.result.info.probe or "")

    put_objects(moto, {f"{PREFIX}2.csv": b"2"})
    second = drain(settings, moto)
    assert second.code == ExitCode.OK
    assert len(seen.probes()) == probes_first  # no probe request at all
    assert second.result.info.delete_guard == "if-match"
    assert "cached" in (second.result.info.probe or "")

    put_objects(moto, {f"{PREFIX}3.csv": b"3"})
    forced = drain(replace(settings, probe=True), moto)
    assert forced.code == ExitCode.OK
    assert len(seen.probes()) == 2 * probes_first
    assert "cached" not in (forced.result.info.probe or "")

    _age_probe_cache(settings, 86400 + 60)
    put_objects(moto, {f"{PREFIX}4.csv": b"4"})
    stale = drain(settings, moto)
    assert stale.code == ExitCode.OK
    assert len(seen.probes()) == 3 * probes_first  # a day old: asked again
    assert bucket_keys(moto) == set()


def test_the_cache_is_per_bucket(tmp_path: Path, moto: S3Client) -> None:
    moto.create_bucket(Bucket="other")
    seen = watch(moto)
    drain(drain_settings(tmp_path), moto)
    once = len(seen.probes())
    drain(drain_settings(tmp_path, bucket="other"), moto)
    assert len(seen.probes()) == 2 * once


def test_a_dry_run_without_a_cached_answer_sends_no_delete(tmp_path: Path, moto: S3Client) -> None:
    put_objects(moto, {f"{PREFIX}a.csv": b"a"})
    seen = watch(moto)

    run = drain(drain_settings(tmp_path / "base", dry_run=True), moto)

    assert run.code == ExitCode.OK
    assert [op for op, _, _ in seen.calls if op in DELETES] == []
    assert "not probed yet" in (run.result.info.delete_guard or "")
    assert not (tmp_path / "base").exists()

    probed = drain(drain_settings(tmp_path / "base", dry_run=True, probe=True), moto)
    assert probed.code == ExitCode.OK
    assert probed.result.info.delete_guard == "if-match"
    assert seen.probes() and seen.changes() == []
    assert bucket_keys(moto) == {f"{PREFIX}a.csv"}


def test_a_dry_run_uses_a_cached_answer_and_sends_no_delete(tmp_path: Path, moto: S3Client) -> None:
    settings = drain_settings(tmp_path)
    assert drain(settings, moto).code == ExitCode.OK  # probes and caches
    put_objects(moto, {f"{PREFIX}a.csv": b"a"})
    seen = watch(moto)

    run = drain(replace(settings, dry_run=True), moto)

    assert run.code == ExitCode.OK
    assert run.result.info.delete_guard == "if-match"
    assert [op for op, _, _ in seen.calls if op in DELETES] == []


# -- a server that ignores If-Match on GET --------------------------------------------------------


def test_get_answered_with_another_etag_is_changed_not_kept(tmp_path: Path, moto: S3Client) -> None:
    """The object is overwritten just before its GET, and the server ignores If-Match (as the
    s3rver family does): the answer carries the new version's ETag. s3drain must not keep those
    bytes as the listed object: `changed`, its temp file removed, nothing deleted."""
    put_objects(moto, {f"{PREFIX}a.csv": b"listed", f"{PREFIX}b.csv": b"b"})
    overwritten: list[str] = []

    def overwrite_and_ignore_if_match(operation: str, call: Call) -> None:
        if operation == "GetObject" and call.url.endswith("/a.csv"):
            call.params["headers"].pop("If-Match", None)
            if not overwritten:
                overwritten.append(call.url)
                put_objects(moto, {f"{PREFIX}a.csv": b"a newer upload"})

    seen = watch(moto, overwrite_and_ignore_if_match)
    settings = drain_settings(tmp_path)

    run = drain(settings, moto)

    assert overwritten
    assert run.code == ExitCode.PARTIAL
    assert run.count("changed") == 1 and run.count("downloaded") == 1
    line = next(x for x in audit_lines(settings) if x["key"] == f"{PREFIX}a.csv")
    assert line["status"] == "changed" and line["deleted"] is False
    assert "another version" in line["detail"]
    assert local_tree(settings.raw_dir) == {"b.csv": b"b"}  # no temp file, no a.csv
    assert moto.get_object(Bucket=BUCKET, Key=f"{PREFIX}a.csv")["Body"].read() == b"a newer upload"
    real_deletes = [op for op, probing, _ in seen.calls if op in DELETES and not probing]
    assert len(real_deletes) == 1  # b.csv's only


def test_probe_errors_are_typed(moto: S3Client) -> None:
    """What the run relies on: a denial is a ConfigError, a dead server an AbortError."""
    watch(moto, lambda op, call: error_response(500, "InternalError") if op in DELETES else None)
    with pytest.raises(AbortError, match="nothing was changed"):
        run_probe(moto)


def test_suspended_versioning_is_not_taken_for_exact_version_ids(
    tmp_path: Path, moto: S3Client
) -> None:
    """In a bucket whose versioning is Suspended every new upload replaces the `null` version:
    a delete by VersionId=null would remove an upload made after the object was verified.
    Found by test_servers_e2e on LocalStack: version-id deleted such an overwrite unseen."""
    versioned(moto)
    moto.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"})
    put_objects(moto, {f"{PREFIX}a.csv": b"v1"})
    overwritten: list[str] = []

    def rule(operation: str, call: Call) -> Any:
        answer = not_implemented_if_match(operation, call)
        moment = operation in DELETES or (operation == "HeadObject" and "a.csv" in call.url)
        if answer is None and moment and not is_probe(call) and not overwritten:
            overwritten.append(operation)
            put_objects(moto, {f"{PREFIX}a.csv": b"v2, uploaded mid-run"})
        return answer

    watch(moto, rule)
    settings = drain_settings(tmp_path)

    run = drain(settings, moto)

    assert overwritten
    assert run.result.info.delete_guard == "head-checked"
    assert moto.get_object(Bucket=BUCKET, Key=f"{PREFIX}a.csv")["Body"].read() == (
        b"v2, uploaded mid-run"
    )
    assert run.code == ExitCode.PARTIAL and run.count("changed") == 1
    assert (settings.raw_dir / "a.csv").read_bytes() == b"v1"
