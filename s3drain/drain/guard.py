"""How this run's deletes name exactly the verified object: the delete guard, chosen from what
the server was probed to honour (`s3/probe.py`), the bucket's versioning and the settings.

    both forms honoured                  -> etag-batch   (DeleteObjects, per-key ETag)
    only DeleteObject + If-Match         -> if-match     (one DeleteObject per object)
    neither, versioned bucket            -> version-id   (the verified version, removed for good)
    neither, unversioned bucket          -> head-checked (HEAD + If-Match just before an
                                                          unconditional delete: a race of
                                                          milliseconds remains)
    --no-conditional-delete              -> version-id in a versioned bucket, else none

`--delete-mode batch|single` forces a form; one the server was not seen to honour is refused
unless --no-conditional-delete says conditions are not wanted. `--require-exact-delete` turns
"cannot be exact" into exit 2 before anything changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from s3drain.drain.delete_requests import DeleteGuard
from s3drain.drain.settings import DrainSettings
from s3drain.errors import ConfigError
from s3drain.local.ledger import Ledger
from s3drain.local.paths import prefix_folder
from s3drain.s3.client import S3Client
from s3drain.s3.probe import CACHE_SECONDS, Answer, ProbeResult, probe
from s3drain.s3.retry import RetryPolicy


@dataclass(frozen=True)
class GuardChoice:
    guard: DeleteGuard
    probe: ProbeResult | None
    note: str | None = None  # said once per run: what the guard can and cannot promise


_HEAD_CHECKED_NOTE = (
    "this server honours no conditional delete and the bucket is unversioned: each delete is "
    "preceded by a HEAD with If-Match, which narrows the race with an overwrite to "
    "milliseconds but cannot close it (--require-exact-delete stops instead)"
)
_VERSION_ID_NOTE = (
    "this server honours no conditional delete: deletes name the version that was verified "
    "and remove that version for good (an older version of the key, if any, becomes current)"
)


def _refuse(mode: str, form: str, probe: ProbeResult) -> ConfigError:
    return ConfigError(
        f"--delete-mode {mode}: this server does not honour {form} ({probe.describe()}), so "
        "such a delete could remove a newer upload; nothing was changed",
        hint="drop --delete-mode to let s3drain choose the exact form, or add "
        "--no-conditional-delete to delete without the check",
    )


def choose_guard(
    settings: DrainSettings, probe: ProbeResult | None, versioned: bool
) -> GuardChoice:
    """`probe` is None only with --no-conditional-delete."""
    choice = _choose(settings, probe, versioned)
    if settings.require_exact_delete and not choice.guard.exact:
        raise ConfigError(
            f"--require-exact-delete: deletes here would be {choice.guard.value}, which cannot "
            "tie a delete to the verified object"
            + (f" ({probe.describe()})" if probe is not None else "")
            + "; nothing was changed",
            hint="enable versioning on the bucket (deletes then name the verified version), or "
            "drop --require-exact-delete to accept it",
        )
    return choice


def _choose(settings: DrainSettings, probe: ProbeResult | None, versioned: bool) -> GuardChoice:
    if not settings.conditional_delete:
        if versioned:
            return GuardChoice(
                DeleteGuard.VERSION_ID,
                probe,
                "--no-conditional-delete: in this versioned bucket deletes name the version "
                "downloaded and remove it for good, and an older version of the same key becomes "
                "current again",
            )
        return GuardChoice(
            DeleteGuard.NONE,
            probe,
            "--no-conditional-delete: deletes cannot check that the object is unchanged: one "
            "overwritten after it was verified is deleted without being downloaded",
        )
    assert probe is not None
    batch = probe.delete_objects_etag is Answer.HONOURED
    single = probe.delete_object_if_match is Answer.HONOURED
    if settings.delete_mode == "batch":
        if not batch:
            raise _refuse("batch", "the per-key ETag of DeleteObjects", probe)
        return GuardChoice(DeleteGuard.ETAG_BATCH, probe)
    if settings.delete_mode == "single":
        if not single:
            raise _refuse("single", "If-Match on DeleteObject", probe)
        return GuardChoice(DeleteGuard.IF_MATCH, probe)
    if batch:
        return GuardChoice(DeleteGuard.ETAG_BATCH, probe)
    if single:
        return GuardChoice(DeleteGuard.IF_MATCH, probe)
    if versioned:
        return GuardChoice(DeleteGuard.VERSION_ID, probe, _VERSION_ID_NOTE)
    return GuardChoice(DeleteGuard.HEAD_CHECKED, probe, _HEAD_CHECKED_NOTE)


def probed(
    settings: DrainSettings, client: S3Client, retry: RetryPolicy, ledger: Ledger | None
) -> ProbeResult | None:
    """The server's answers, from the ledger's cache (a day, per endpoint and bucket) unless
    --probe asks again; a fresh probe is cached. A dry run sends no delete request, not even
    the probe's, unless --probe asks for it: without a cached answer it returns None."""
    endpoint = settings.s3.endpoint_url or f"aws:{settings.s3.region or 'default'}"
    if ledger is not None and not settings.probe:
        cached = ledger.probe_result(endpoint, settings.bucket, CACHE_SECONDS)
        if cached is not None:
            return ProbeResult.from_json(cached)
    if settings.dry_run and not settings.probe:
        return None
    result = probe(client, settings.bucket, prefix_folder(settings.prefix), retry)
    if ledger is not None and not settings.dry_run:
        ledger.save_probe(endpoint, settings.bucket, result.to_json())
    return result
