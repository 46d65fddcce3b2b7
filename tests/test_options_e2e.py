"""Issue 6, the options an operator runs s3drain with, each proven on a real drain: the real
`python -m s3drain` as a subprocess against moto's HTTP server (through the fault proxy where a
request has to be held or something has to happen between two requests). Every test looks at
what an operator would look at: the files on disk, what is left in the bucket, the output and
the exit code. Bad values must give one `s3drain: error:` line and exit 2.

The shortfalls these tests found (environment safety switches ignored, argparse noise, dry
runs writing metrics, braces in labels, no shard label, shards sharing a raw folder, progress
before deletes, dry-run sizes, the guard tripping mid-run, early-exit counts) were fixed in
the drain; the tests stay as their proof.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.drainkit import bucket_keys, local_tree, place_copy
from tests.support.proxy import FaultProxy, RequestInfo
from tests.support.server import S3Client
from tests.test_cli_e2e import (
    BUCKET,
    PREFIX,
    ROOT,
    assert_clean_error,
    audit,
    cli_env,
    drain_args,
    fill,
    run_cli,
)

OUTPUT_DOC = ROOT / "docs" / "output.md"
SCHEDULING_DOC = ROOT / "docs" / "scheduling.md"

# One small tree used by several tests: names chosen so that every filter rule has something to
# match and something to miss.
TREE = {
    f"{PREFIX}a.csv": b"a" * 100,
    f"{PREFIX}b.txt": b"b" * 110,
    f"{PREFIX}sub/c.csv": b"c" * 120,
    f"{PREFIX}sub/deep/d.csv": b"d" * 130,
    f"{PREFIX}sub/deep/e.txt": b"e" * 140,
}


def rel(key: str) -> str:
    return key[len(PREFIX) :]


def drain(
    tmp_path: Path, url: str, base: Path, *more: str, **env: str
) -> subprocess.CompletedProcess[str]:
    # cwd is the test's own folder: a developer's config/.env must not leak into the run.
    return run_cli(drain_args(base, *more), cli_env(url, **env), cwd=tmp_path)


def drain_json(
    tmp_path: Path, url: str, base: Path, *more: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    result = drain(tmp_path, url, base, "--json", *more)
    try:
        summary = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"stdout is not one JSON object:\n{result.stdout}\n{result.stderr}")
    assert isinstance(summary, dict)
    return result, summary


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root, folders included (None), so a created empty folder shows."""
    found: dict[str, bytes | None] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            found[str((Path(folder) / name).relative_to(root)) + "/"] = None
        for name in files:
            path = Path(folder) / name
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def dry_run_lines(text: str) -> dict[str, str]:
    """`would download   exports/2024/a.csv -> ... (100 B)` -> {key: 'would download'}."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"^(would \w+)\s+(\S+)", line)
        if match:
            assert match.group(2) not in found, f"two lines for {match.group(2)}"
            found[match.group(2)] = match.group(1)
    return found


# --- --help and the README -------------------------------------------------------------------

ISSUE_6_OPTIONS = (
    "--dry-run",
    "--include",
    "--exclude",
    "--min-age",
    "--max-objects",
    "--max-bytes",
    "--max-delete",
    "--no-delete",
    "--quiet",
    "--verbose",
    "--json",
    "--metrics-file",
    "--shard",
)


def test_every_operator_option_is_in_help_and_readme(tmp_path: Path) -> None:
    result = run_cli(["drain", "--help"], os.environ, cwd=tmp_path)
    assert result.returncode == 0
    help_text = result.stdout
    for option in ISSUE_6_OPTIONS:
        assert option in help_text, option
    assert "exit 4" in help_text or "4  --max-delete" in help_text

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "## Options for operators" in readme
    section = readme.split("## Options for operators", 1)[1].split("\n## ", 1)[0]
    for option in ISSUE_6_OPTIONS:
        assert f"`{option}" in section, option
    assert "docs/scheduling.md" in section and "docs/output.md" in section
    assert SCHEDULING_DOC.is_file() and OUTPUT_DOC.is_file()


# --- --dry-run -------------------------------------------------------------------------------


def test_dry_run_changes_nothing_and_says_what_would_happen(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    fill(s3, TREE)
    base = tmp_path / "base"
    (base / "processed").mkdir(parents=True)
    place_copy(base / "processed" / "a.csv", TREE[f"{PREFIX}a.csv"])  # would delete
    (base / "raw").mkdir()
    (base / "raw" / "b.txt").write_bytes(b"not the object")  # would keep: a conflict
    before = snapshot(base)

    result = drain(tmp_path, s3_url, base, "--dry-run")

    assert result.returncode == 1, result.stderr  # the conflict would be left in S3
    assert snapshot(base) == before  # no .s3drain/, no lock, no audit log, no folder
    assert bucket_keys(s3) == set(TREE)
    lines = dry_run_lines(result.stdout)
    assert lines == {
        f"{PREFIX}a.csv": "would delete",
        f"{PREFIX}b.txt": "would keep",
        f"{PREFIX}sub/c.csv": "would download",
        f"{PREFIX}sub/deep/d.csv": "would download",
        f"{PREFIX}sub/deep/e.txt": "would download",
    }
    summary = result.stdout[result.stdout.index("s3drain drain:") :]
    assert "dry run: nothing was changed" in summary
    assert re.search(r"^\s+downloaded\s+3\s", summary, re.M), summary
    assert re.search(r"^\s+processed\s+1\s", summary, re.M), summary
    assert re.search(r"^\s+conflict\s+1\s", summary, re.M), summary


def test_dry_run_creates_no_folder_and_json_keeps_stdout_pure(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    fill(s3, TREE)
    base = tmp_path / "never-created"

    result, summary = drain_json(tmp_path, s3_url, base, "--dry-run")

    assert result.returncode == 0, result.stderr
    assert not base.exists()
    assert bucket_keys(s3) == set(TREE)
    assert summary["dry_run"] is True and summary["exit_code"] == 0
    assert summary["objects"]["downloaded"] == len(TREE) and summary["deleted"] == 0
    assert summary["audit_log"] is None
    assert set(summary["requests"]["by_operation"]) == {"GetBucketVersioning", "ListObjectsV2"}
    # The per-object lines move to stderr, so stdout stays one JSON object.
    assert set(dry_run_lines(result.stderr)) == set(TREE)


def test_dry_run_totals_show_the_bytes_it_would_download(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    fill(s3, TREE)
    result = drain(tmp_path, s3_url, tmp_path / "base", "--dry-run")
    summary = result.stdout[result.stdout.index("s3drain drain:") :]
    row = next(line for line in summary.splitlines() if line.strip().startswith("downloaded"))
    assert "600 B" in row, row  # 100 + 110 + 120 + 130 + 140


# --- --include / --exclude -------------------------------------------------------------------


def test_include_exclude_first_match_decides_on_a_real_drain(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    fill(s3, TREE)
    base = tmp_path / "base"

    result, summary = drain_json(
        tmp_path, s3_url, base, "--exclude", "sub/deep/*", "--include", "**/*.csv"
    )

    assert result.returncode == 0, result.stderr
    # a.csv, sub/c.csv: included. sub/deep/d.csv: the exclude came first. *.txt: no rule
    # matched, and with any --include an unmatched key is left.
    assert local_tree(base / "raw") == {
        "a.csv": TREE[f"{PREFIX}a.csv"],
        "sub/c.csv": TREE[f"{PREFIX}sub/c.csv"],
    }
    assert bucket_keys(s3) == {
        f"{PREFIX}b.txt",
        f"{PREFIX}sub/deep/d.csv",
        f"{PREFIX}sub/deep/e.txt",
    }
    assert summary["filtered"] == 3 and summary["left_in_s3"] == 0
    assert summary["deleted"] == 2
    assert [line["key"] for line in audit(base)].count(f"{PREFIX}b.txt") == 0


@pytest.mark.parametrize(
    ("rules", "taken"),
    [
        # The same two rules the other way round: the include now matches d.csv first.
        (
            ["--include", "**/*.csv", "--exclude", "sub/deep/*"],
            {"a.csv", "sub/c.csv", "sub/deep/d.csv"},
        ),
        # No '/': the name in any folder.
        (["--include", "*.csv"], {"a.csv", "sub/c.csv", "sub/deep/d.csv"}),
        # '*' stays in one folder, '**' crosses folders.
        (["--include", "sub/*"], {"sub/c.csv"}),
        (["--include", "sub/**"], {"sub/c.csv", "sub/deep/d.csv", "sub/deep/e.txt"}),
        (["--include", "sub/**/d.csv"], {"sub/deep/d.csv"}),
        # Only excludes: whatever they do not match is taken.
        (["--exclude", "*.txt"], {"a.csv", "sub/c.csv", "sub/deep/d.csv"}),
        # Patterns match the path below the prefix, not the whole key.
        (["--include", f"{PREFIX}a.csv"], set()),
    ],
    ids=[
        "include-first",
        "name-anywhere",
        "star",
        "double-star",
        "double-star-middle",
        "exclude-only",
        "whole-key",
    ],
)
def test_filter_rules(
    tmp_path: Path, s3_url: str, s3: S3Client, rules: list[str], taken: set[str]
) -> None:
    fill(s3, TREE)
    result, summary = drain_json(tmp_path, s3_url, tmp_path / "base", "--dry-run", *rules)
    assert result.returncode == 0, result.stderr
    assert {rel(key) for key in dry_run_lines(result.stderr)} == taken
    assert summary["filtered"] == len(TREE) - len(taken)


# --- --min-age -------------------------------------------------------------------------------


def test_min_age_leaves_objects_younger_than_it(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    fill(s3, TREE)
    base = tmp_path / "base"

    result, summary = drain_json(tmp_path, s3_url, base, "--min-age", "1h")

    assert result.returncode == 0, result.stderr
    assert bucket_keys(s3) == set(TREE)
    assert local_tree(base / "raw") == {}
    assert summary["filtered"] == len(TREE) and summary["deleted"] == 0

    verbose = drain(tmp_path, s3_url, base, "--min-age", "2h", "-v")
    assert verbose.stderr.count("younger than --min-age") == len(TREE), verbose.stderr

    everything = drain(tmp_path, s3_url, base, "--min-age", "0s")
    assert everything.returncode == 0, everything.stderr
    assert bucket_keys(s3) == set()
    assert local_tree(base / "raw") == {rel(k): v for k, v in TREE.items()}


def test_min_age_takes_the_settled_batch_and_leaves_the_one_being_written(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    """S3 timestamps are whole seconds (rounded down), so an object can look up to 1 s older
    than it is, never younger: the settled batch is always taken. The batch being written is
    left as long as the run lists it less than MIN_AGE - 1 s after it was written; the
    assertion on it is made only when the run provably did."""
    min_age = 4.0
    settled = {f"{PREFIX}settled/{i}.csv": b"s" * 10 for i in range(3)}
    fill(s3, settled)
    time.sleep(min_age + 0.5)
    writing = {f"{PREFIX}writing/{i}.csv": b"w" * 10 for i in range(3)}
    for key, body in writing.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    written = time.monotonic()

    result = drain(tmp_path, s3_url, tmp_path / "base", "--min-age", f"{min_age:g}s")
    window = time.monotonic() - written

    assert result.returncode == 0, result.stderr
    assert set(local_tree(tmp_path / "base" / "raw")) >= {rel(k) for k in settled}
    assert not bucket_keys(s3) & set(settled)
    if window < min_age - 1:
        assert bucket_keys(s3) == set(writing)


# --- --max-objects / --max-bytes -------------------------------------------------------------


def test_max_objects_takes_the_first_n_keys_and_says_it_stopped(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    fill(s3, TREE)
    result, summary = drain_json(tmp_path, s3_url, tmp_path / "base", "--max-objects", "2")
    assert result.returncode == 0, result.stderr
    first_two = sorted(TREE)[:2]  # ListObjectsV2 returns keys in order
    assert set(local_tree(tmp_path / "base" / "raw")) == {rel(k) for k in first_two}
    assert bucket_keys(s3) == set(TREE) - set(first_two)
    assert summary["deleted"] == 2
    assert "--max-objects 2" in summary["stopped_early"]


def test_max_bytes_counts_listed_sizes_and_always_takes_one_object(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    fill(s3, TREE)  # in key order: 100, 110, 120, 130, 140 bytes
    base = tmp_path / "base"

    result, summary = drain_json(tmp_path, s3_url, base, "--max-bytes", "250")

    assert result.returncode == 0, result.stderr
    assert summary["objects"]["downloaded"] == 2 and summary["bytes_downloaded"] == 210
    assert "--max-bytes 250" in summary["stopped_early"]
    assert len(bucket_keys(s3)) == 3

    # A limit smaller than the next object still takes that one object, so a large object
    # can never stall a prefix behind it.
    tiny, tiny_summary = drain_json(tmp_path, s3_url, base, "--max-bytes", "10")
    assert tiny.returncode == 0, tiny.stderr
    assert tiny_summary["objects"]["downloaded"] == 1 and tiny_summary["bytes_downloaded"] == 120
    assert bucket_keys(s3) == {f"{PREFIX}sub/deep/d.csv", f"{PREFIX}sub/deep/e.txt"}


# --- --max-delete ----------------------------------------------------------------------------


def test_max_delete_exceeded_exits_4_and_touches_nothing(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    fill(s3, TREE)
    base = tmp_path / "base"
    (base / "processed").mkdir(parents=True)
    place_copy(base / "processed" / "a.csv", TREE[f"{PREFIX}a.csv"])  # a delete too

    result = drain(tmp_path, s3_url, base, "--max-delete", "4")

    assert_clean_error(result, 4, "would delete 5 objects", "--max-delete 4")
    assert bucket_keys(s3) == set(TREE)
    assert local_tree(base / "raw") == {}
    assert (base / "processed" / "a.csv").exists()
    assert audit(base) == []

    with_json, summary = drain_json(tmp_path, s3_url, base, "--max-delete", "4")
    assert with_json.returncode == 4
    assert summary["exit_code"] == 4 and "--max-delete 4" in summary["error"]
    assert summary["deleted"] == 0 and summary["bytes_downloaded"] == 0


def test_max_delete_at_the_count_passes(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    fill(s3, TREE)
    result = drain(tmp_path, s3_url, tmp_path / "base", "--max-delete", str(len(TREE)))
    assert result.returncode == 0, result.stderr
    assert bucket_keys(s3) == set()


def test_max_delete_counts_only_what_the_filters_take(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    fill(s3, TREE)
    result = drain(tmp_path, s3_url, tmp_path / "base", "--max-delete", "2", "--exclude", "sub/**")
    assert result.returncode == 0, result.stderr
    assert bucket_keys(s3) == {k for k in TREE if rel(k).startswith("sub/")}


def test_max_delete_with_dry_run_exits_4_and_with_no_delete_does_not_apply(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    fill(s3, TREE)
    base = tmp_path / "base"

    dry = drain(tmp_path, s3_url, base, "--max-delete", "1", "--dry-run")
    assert dry.returncode == 4, dry.stderr
    assert "--max-delete 1" in dry.stdout and not base.exists()

    copy = drain(tmp_path, s3_url, base, "--max-delete", "1", "--no-delete")
    assert copy.returncode == 0, copy.stderr
    assert len(local_tree(base / "raw")) == len(TREE)
    assert bucket_keys(s3) == set(TREE)


def _drain_while_objects_arrive(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> subprocess.CompletedProcess[str]:
    """--max-delete 3 over 3 objects; 2 more arrive between the guard's listing and the run's."""
    fill(s3, {f"{PREFIX}{i}.csv": b"x" for i in range(3)})
    lists: list[str] = []

    def arrive(info: RequestInfo) -> None:
        if info.op == "ListObjectsV2":
            lists.append(info.path)
            if len(lists) == 2:
                for i in (3, 4):
                    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}{i}.csv", Body=b"x")

    with FaultProxy(s3_url, before_forward=arrive) as proxy:
        result = drain(tmp_path, proxy.url, tmp_path / "base", "--max-delete", "3", "--json")
    assert len(lists) == 2, "expected the guard's listing, then the run's"
    return result


def test_max_delete_is_a_hard_cap_when_objects_arrive_mid_run(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    result = _drain_while_objects_arrive(tmp_path, s3_url, s3)
    summary = json.loads(result.stdout)
    assert summary["deleted"] == 3
    assert len(bucket_keys(s3)) == 2


def test_max_delete_tripping_mid_run_still_exits_4(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    result = _drain_while_objects_arrive(tmp_path, s3_url, s3)
    assert result.returncode == 4, result.stderr


def test_max_delete_json_counts_the_requests_the_guard_made(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    fill(s3, TREE)
    result, summary = drain_json(tmp_path, s3_url, tmp_path / "base", "--max-delete", "1")
    assert result.returncode == 4
    assert summary["requests"]["by_operation"].get("ListObjectsV2", 0) >= 1
    assert summary["listed"] == len(TREE)


# --- --no-delete -----------------------------------------------------------------------------


def test_no_delete_copies_then_a_normal_run_deletes_without_downloading(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    fill(s3, TREE)
    base = tmp_path / "base"

    copy, summary = drain_json(tmp_path, s3_url, base, "--no-delete")

    assert copy.returncode == 0, copy.stderr
    assert summary["no_delete"] is True and summary["deleted"] == 0
    assert summary["objects"]["downloaded"] == len(TREE)
    assert "DeleteObjects" not in summary["requests"]["by_operation"]
    assert local_tree(base / "raw") == {rel(k): v for k, v in TREE.items()}
    assert bucket_keys(s3) == set(TREE)
    assert all(line["deleted"] is False for line in audit(base))

    then, then_summary = drain_json(tmp_path, s3_url, base)
    assert then.returncode == 0, then.stderr
    assert then_summary["objects"]["present"] == len(TREE)
    assert "GetObject" not in then_summary["requests"]["by_operation"]
    assert bucket_keys(s3) == set()


@pytest.mark.parametrize(
    "variable", ["S3DRAIN_NO_DELETE=1", "S3DRAIN_DRY_RUN=1", "S3DRAIN_EXCLUDE=*"]
)
def test_a_safety_setting_in_the_environment_is_never_ignored(
    tmp_path: Path, s3_url: str, s3: S3Client, variable: str
) -> None:
    """Either the variable works like its flag, or it is refused (exit 2); never a silent
    drain-and-delete."""
    fill(s3, {f"{PREFIX}a.csv": b"a"})
    name, value = variable.split("=")
    result = drain(tmp_path, s3_url, tmp_path / "base", **{name: value})
    assert result.returncode in (0, 2), result.stderr
    assert bucket_keys(s3) == {f"{PREFIX}a.csv"}


# --- progress line, -v, -q -------------------------------------------------------------------


@dataclass
class _Terminal:
    """The read end of a pseudo-terminal, read in a thread until the child closes it."""

    master: int
    chunks: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def read_all(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: every copy of the slave end is closed
                return
            if not data:
                return
            with self.lock:
                self.chunks.append(data)

    def text(self) -> str:
        with self.lock:
            return b"".join(self.chunks).decode("utf-8", "replace")


def progress_frames(text: str) -> list[str]:
    return [part.strip() for part in text.split("\r\x1b[K") if "obj/s" in part]


@dataclass
class _HeldRun:
    returncode: int
    stdout: str
    stderr: str  # what the terminal showed, when stderr was one
    while_held: str  # what the terminal showed before the first delete batch was let go


def run_with_held_delete(
    tmp_path: Path,
    s3_url: str,
    *args: str,
    tty: bool,
    release: Callable[[Callable[[], str]], bool],
) -> _HeldRun:
    """Drain 6 objects with the first delete after the listing (not the probe's, which come
    before it) held by the proxy until `release(screen)` says so (or 20 s): the run lasts as
    long as the test needs, whatever the machine's speed."""
    master, slave = pty.openpty() if tty else (-1, -1)
    terminal = _Terminal(master)
    held = threading.Event()
    listed = threading.Event()
    snapshot_text: list[str] = []

    def hold(info: RequestInfo) -> None:
        if info.op == "ListObjectsV2":
            listed.set()
        if not info.op.startswith("DeleteObject") or not listed.is_set() or held.is_set():
            return
        held.set()
        deadline = time.monotonic() + 20
        while not release(terminal.text) and time.monotonic() < deadline:
            time.sleep(0.05)
        snapshot_text.append(terminal.text())

    with FaultProxy(s3_url, before_forward=hold) as proxy:
        proc = subprocess.Popen(
            [sys.executable, "-m", "s3drain", *drain_args(tmp_path / "base", *args)],
            env=cli_env(proxy.url),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave if tty else subprocess.PIPE,
            text=True,
        )
        reader = None
        if tty:
            os.close(slave)
            reader = threading.Thread(target=terminal.read_all, daemon=True)
            reader.start()
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            if reader is not None:
                reader.join(timeout=10)
                os.close(master)
    assert held.is_set(), "the run sent no delete"
    return _HeldRun(
        proc.returncode,
        out,
        terminal.text() if tty else err,
        snapshot_text[0] if snapshot_text else "",
    )


def _fill_six(s3: S3Client) -> None:
    fill(s3, {f"{PREFIX}p{i}.csv": b"p" * 1000 for i in range(6)})


def _frames_seen(count: int) -> Callable[[Callable[[], str]], bool]:
    return lambda screen: len(progress_frames(screen())) >= count


def _after(seconds: float) -> Callable[[Callable[[], str]], bool]:
    """Release after `seconds`: at least two redraws' worth for a progress line that is on."""
    deadline: list[float] = []

    def release(_: Callable[[], str]) -> bool:
        if not deadline:
            deadline.append(time.monotonic() + seconds)
        return time.monotonic() >= deadline[0]

    return release


def test_progress_line_on_a_terminal(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    _fill_six(s3)
    run = run_with_held_delete(tmp_path, s3_url, tty=True, release=_frames_seen(2))
    assert run.returncode == 0, run.stderr
    frames = progress_frames(run.stderr)
    assert len(frames) >= 2, repr(run.stderr)
    pattern = r"^[\d,]+ objects\s+\S+ \S*B\s+[\d,.]+ obj/s\s+\S+ \S*B/s\s+left in S3 [\d,]+"
    assert all(re.match(pattern, frame) for frame in frames), frames
    assert any("ETA" in frame for frame in frames), frames
    # The line is wiped before the run ends: nothing of it is left on the terminal.
    assert run.stderr.endswith("\r\x1b[K"), repr(run.stderr[-200:])
    assert "result: ok" in run.stdout  # the summary goes to stdout, not into the line


def test_progress_line_counts_downloads_before_their_delete(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    _fill_six(s3)
    run = run_with_held_delete(tmp_path, s3_url, tty=True, release=_frames_seen(3))
    assert run.returncode == 0, run.stderr
    frames = progress_frames(run.while_held)
    assert frames, repr(run.while_held)
    counted = [f for f in frames if not f.startswith("0 objects") and " 0 B " not in f]
    assert counted, frames
    assert any(re.search(r"ETA \d", f) for f in counted), counted


def test_no_progress_line_without_a_terminal_or_with_quiet(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    _fill_six(s3)
    piped = run_with_held_delete(tmp_path, s3_url, tty=False, release=_after(1.5))
    assert piped.returncode == 0, piped.stderr
    assert "obj/s" not in piped.stderr and "\x1b[K" not in piped.stderr

    _fill_six(s3)
    quiet = run_with_held_delete(tmp_path, s3_url, "-q", tty=True, release=_after(1.5))
    assert quiet.returncode == 0, quiet.stderr
    assert "obj/s" not in quiet.stderr and "\x1b[K" not in quiet.stderr
    assert quiet.stdout == ""


def test_verbose_prints_one_line_per_object(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    fill(s3, TREE)
    base = tmp_path / "base"
    (base / "raw").mkdir(parents=True)
    (base / "raw" / "a.csv").write_bytes(b"in the way")

    result = drain(tmp_path, s3_url, base, "-v", "--exclude", "*.txt")

    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    for key in TREE:
        mine = [line for line in lines if f" {key}" in line]
        assert len(mine) == 1, (key, lines)
    by_key = {key: next(line for line in lines if f" {key}" in line) for key in TREE}
    assert by_key[f"{PREFIX}a.csv"].startswith("conflict ")
    assert "kept in S3" in by_key[f"{PREFIX}a.csv"]
    assert by_key[f"{PREFIX}b.txt"].startswith("filtered ")
    for key in (f"{PREFIX}sub/c.csv", f"{PREFIX}sub/deep/d.csv"):
        assert by_key[key].startswith("downloaded ") and by_key[key].endswith("deleted from S3")
        assert str(base / "raw" / rel(key)) in by_key[key]

    plain = drain(tmp_path, s3_url, tmp_path / "other", "--include", "*.txt")
    assert plain.returncode == 0 and plain.stderr == ""  # no per-object lines by default


def test_quiet_is_silent_on_success_and_names_problems(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    fill(s3, TREE)
    base = tmp_path / "base"

    ok = drain(tmp_path, s3_url, base, "-q", "--exclude", "a.csv")
    assert ok.returncode == 0 and ok.stdout == "" and ok.stderr == ""

    (base / "raw" / "a.csv").write_bytes(b"in the way")
    partial = drain(tmp_path, s3_url, base, "-q")
    assert partial.returncode == 1 and partial.stdout == ""
    assert partial.stderr.splitlines() == [
        f"s3drain: conflict: {PREFIX}a.csv: "
        f"a different file is at {base / 'raw' / 'a.csv'}: it is 10 bytes, the object 100",
        "s3drain: result: 1 object left in S3, see above (exit 1)",
    ]


# --- --json ----------------------------------------------------------------------------------

JSON_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "schema": int,
    "command": str,
    "bucket": str,
    "prefix": str,
    "destination": str,
    "dry_run": bool,
    "no_delete": bool,
    "exit_code": int,
    "error": (str, type(None)),
    "stopped_early": (str, type(None)),
    "seconds": (int, float),
    "listed": int,
    "filtered": int,
    "objects": dict,
    "deleted": int,
    "left_in_s3": int,
    "bytes_downloaded": int,
    "bytes_deleted": int,
    "bytes": dict,
    "shard": (str, type(None)),
    "retries": int,
    "requests": dict,
    "audit_log": (str, type(None)),
    "delete_guard": (str, type(None)),
    "delete_guard_exact": (bool, type(None)),
    "probe": (str, type(None)),
}
STATUSES = (
    "downloaded",
    "processed",
    "present",
    "conflict",
    "refused",
    "changed",
    "failed",
    "skipped",
)


def test_json_summary_schema_on_a_partial_run(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    fill(s3, TREE)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}folder/", Body=b"")  # a folder marker: skipped
    base = tmp_path / "base"
    (base / "processed").mkdir(parents=True)
    place_copy(base / "processed" / "b.txt", TREE[f"{PREFIX}b.txt"])
    (base / "raw").mkdir()
    (base / "raw" / "a.csv").write_bytes(b"in the way")

    result, summary = drain_json(tmp_path, s3_url, base, "--exclude", "sub/deep/e.txt")

    assert result.returncode == 1, result.stderr
    assert list(summary) == list(JSON_SCHEMA)  # every key, in the documented order
    for key, kind in JSON_SCHEMA.items():
        assert isinstance(summary[key], kind), (key, summary[key])
    assert not isinstance(summary["listed"], bool)
    assert summary["schema"] == 1 and summary["command"] == "drain"
    assert summary["bucket"] == BUCKET and summary["prefix"] == PREFIX
    assert summary["destination"] == str(base / "raw")
    assert summary["exit_code"] == result.returncode == 1
    assert summary["error"] is None and summary["stopped_early"] is None
    assert summary["objects"] == {
        "downloaded": 2,
        "processed": 1,
        "present": 0,
        "conflict": 1,
        "refused": 0,
        "changed": 0,
        "failed": 0,
        "skipped": 1,
    }
    assert list(summary["objects"]) == list(STATUSES)
    assert summary["listed"] == len(TREE) + 1 and summary["filtered"] == 1
    assert summary["deleted"] == 3 and summary["left_in_s3"] == 1
    assert summary["bytes_downloaded"] == 120 + 130
    assert summary["bytes_deleted"] == 110 + 120 + 130
    assert summary["retries"] == 0 and summary["seconds"] >= 0
    assert summary["audit_log"] == str(base / ".s3drain" / "audit.jsonl")
    requests = summary["requests"]
    assert set(requests) == {"total", "by_operation"}
    by_op = requests["by_operation"]
    assert by_op["GetBucketVersioning"] == 1 and by_op["ListObjectsV2"] == 1
    assert by_op["GetObject"] == 2
    assert 1 <= by_op["DeleteObjects"] <= 3  # one batch, unless the 2 s flush timer fired
    assert requests["total"] == sum(by_op.values())
    # Nothing but the JSON object on stdout; problems still on stderr.
    assert result.stdout.count("\n") == 1
    assert f"conflict: {PREFIX}a.csv" in result.stderr

    documented = OUTPUT_DOC.read_text(encoding="utf-8")
    nested = [f"objects.{s}" for s in STATUSES] + ["requests.total", "requests.by_operation"]
    for key in [*JSON_SCHEMA, *nested]:
        assert f"`{key}`" in documented, f"{key} is not documented in docs/output.md"


def test_json_on_errors_before_the_run(tmp_path: Path, s3_url: str) -> None:
    """Decided and documented (docs/output.md): a rejected setting is reported before any
    summary exists, so stdout stays empty; an error found once s3drain is talking to S3 (missing
    bucket, lock, --max-delete) still gives the JSON object, with `error` and `exit_code`."""
    bad = drain(tmp_path, s3_url, tmp_path / "base", "--json", "--shard", "3/2")
    assert_clean_error(bad, 2, "--shard")
    assert bad.stdout == ""

    missing, summary = drain_json(tmp_path, s3_url, tmp_path / "base")
    assert_clean_error(missing, 2, "does not exist")
    assert summary["exit_code"] == 2 and "does not exist" in summary["error"]
    assert not (tmp_path / "base").exists()


# --- --metrics-file --------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)')


def _unescape(value: str) -> str:
    return re.sub(r"\\([\\\"n])", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse_prometheus(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Strict enough for the textfile collector: HELP and TYPE once per family, before its
    samples; a family's samples together; label values escaped; numbers that parse."""
    assert text.endswith("\n"), "the last line must end with a newline"
    families: dict[str, list[tuple[dict[str, str], float]]] = {}
    helps: set[str] = set()
    types: dict[str, str] = {}
    current = ""
    for number, line in enumerate(text.splitlines(), 1):
        where = f"line {number}: {line!r}"
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in helps, where
            helps.add(name)
            current = name
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name == current and name not in types, where
            assert kind in ("gauge", "counter", "untyped"), where
            types[name] = kind
            continue
        assert not line.startswith("#") and line.strip(), where
        match = _SAMPLE.match(line)
        assert match, where
        name, raw_labels, value = match.groups()
        assert name == current and name in types, f"{where}: sample outside its family"
        labels: dict[str, str] = {}
        rest = raw_labels or ""
        while rest:
            label = _LABEL.match(rest)
            assert label, f"{where}: bad labels at {rest!r}"
            assert label.group(1) not in labels, where
            labels[label.group(1)] = _unescape(label.group(2))
            rest = rest[label.end() :]
        families.setdefault(name, []).append((labels, float(value)))
    for name in helps:
        families.setdefault(name, [])
    return families


def one(
    families: Mapping[str, list[tuple[dict[str, str], float]]], name: str, **want: str
) -> float:
    found = [v for labels, v in families[name] if all(labels.get(k) == w for k, w in want.items())]
    assert len(found) == 1, (name, want, families.get(name))
    return found[0]


def test_metrics_file_is_valid_prometheus_text_with_escaped_labels(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    prefix = 'odd "quoted" \\ prefix/'
    fill(s3, {f"{prefix}a.csv": b"a" * 10, f"{prefix}b.csv": b"b" * 20})
    metrics = tmp_path / "textfile" / "s3drain.prom"
    started = time.time()

    result = run_cli(
        [
            "--bucket", BUCKET, "--prefix", prefix, "--local-base-path", str(tmp_path / "base"),
            "--metrics-file", str(metrics),
        ],
        cli_env(s3_url),
        cwd=tmp_path,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    families = parse_prometheus(metrics.read_text(encoding="utf-8"))
    for name, samples in families.items():
        for labels, _ in samples:
            assert labels["bucket"] == BUCKET and labels["prefix"] == prefix, (name, labels)
    assert one(families, "s3drain_objects", status="downloaded") == 2
    assert {labels["status"] for labels, _ in families["s3drain_objects"]} == set(STATUSES)
    assert one(families, "s3drain_deleted_objects") == 2
    assert one(families, "s3drain_left_in_s3_objects") == 0
    assert one(families, "s3drain_filtered_objects") == 0
    assert one(families, "s3drain_downloaded_bytes") == 30
    assert one(families, "s3drain_requests", operation="GetObject") == 2
    assert one(families, "s3drain_exit_code") == 0
    assert one(families, "s3drain_retries") == 0
    assert one(families, "s3drain_duration_seconds") >= 0
    last_run = one(families, "s3drain_last_run_timestamp_seconds")
    assert started - 1 <= last_run <= time.time() + 1
    assert one(families, "s3drain_last_success_timestamp_seconds") == last_run

    documented = OUTPUT_DOC.read_text(encoding="utf-8")
    for name in families:
        assert f"`{name}`" in documented, f"{name} is not documented in docs/output.md"


def _metrics_after_success_then_failure(
    tmp_path: Path, s3_url: str, s3: S3Client, prefix: str
) -> tuple[str, str]:
    fill(s3, {f"{prefix}a.csv": b"a"})
    metrics = tmp_path / "textfile" / "s3drain.prom"
    metrics.parent.mkdir()
    metrics.write_text("# an older file, replaced whole\n")
    old_inode = metrics.stat().st_ino
    args = ["--bucket", BUCKET, "--prefix", prefix, "--local-base-path", str(tmp_path / "base")]
    args += ["--metrics-file", str(metrics)]

    ok = run_cli(args, cli_env(s3_url), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    first = metrics.read_text(encoding="utf-8")
    assert metrics.stat().st_ino != old_inode  # renamed into place, not rewritten in place
    assert sorted(p.name for p in metrics.parent.iterdir()) == ["s3drain.prom"]  # no temp

    s3.put_object(Bucket=BUCKET, Key=f"{prefix}b.csv", Body=b"b")
    guarded = run_cli([*args, "--max-delete", "0"], cli_env(s3_url), cwd=tmp_path)
    assert guarded.returncode == 4, guarded.stderr
    assert sorted(p.name for p in metrics.parent.iterdir()) == ["s3drain.prom"]
    return first, metrics.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "prefix",
    [
        PREFIX,
        "team}x/",  # a '}' inside a label value must not lose the last success time
    ],
    ids=["plain", "brace-in-prefix"],
)
def test_metrics_file_replaced_atomically_and_last_success_carried_over(
    tmp_path: Path, s3_url: str, s3: S3Client, prefix: str
) -> None:
    first, second = _metrics_after_success_then_failure(tmp_path, s3_url, s3, prefix)
    before, after = parse_prometheus(first), parse_prometheus(second)
    assert one(after, "s3drain_exit_code") == 4
    assert one(after, "s3drain_last_run_timestamp_seconds") >= one(
        before, "s3drain_last_run_timestamp_seconds"
    )
    success = "s3drain_last_success_timestamp_seconds"
    assert after.get(success), "the failed run dropped the last success time"
    assert one(after, success) == one(before, success)


def test_dry_run_writes_no_metrics_file(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    fill(s3, TREE)
    metrics = tmp_path / "textfile" / "s3drain.prom"
    result = drain(tmp_path, s3_url, tmp_path / "base", "--dry-run", "--metrics-file", str(metrics))
    assert result.returncode == 0, result.stderr
    assert not metrics.parent.exists()


def test_metrics_of_a_shard_say_which_shard(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    fill(s3, TREE)
    metrics = tmp_path / "textfile" / "s3drain-1.prom"
    result = drain(
        tmp_path, s3_url, tmp_path / "base", "--shard", "1/3", "--metrics-file", str(metrics)
    )
    assert result.returncode == 0, result.stderr
    families = parse_prometheus(metrics.read_text(encoding="utf-8"))
    for samples in families.values():
        for labels, _ in samples:
            assert labels.get("shard") == "1/3", labels


# --- --shard ---------------------------------------------------------------------------------


def test_three_shards_drain_every_key_exactly_once(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    objects = {f"{PREFIX}d{i % 3}/f{i:03d}.csv": f"{i}\n".encode() * 3 for i in range(60)}
    fill(s3, objects)
    trees: list[dict[str, bytes]] = []
    for k in range(3):
        base = tmp_path / f"shard-{k}"
        result, summary = drain_json(tmp_path, s3_url, base, "--shard", f"{k}/3")
        assert result.returncode == 0, result.stderr
        tree = local_tree(base / "raw")
        assert tree, f"shard {k}/3 took nothing"
        # Stable and documented: CRC32 of the whole UTF-8 key, modulo N.
        assert set(tree) == {rel(key) for key in objects if zlib.crc32(key.encode()) % 3 == k}
        assert summary["deleted"] == len(tree)
        # Keys another shard already drained are gone from the listing, the rest filtered.
        assert summary["filtered"] == summary["listed"] - len(tree)
        trees.append(tree)

    assert bucket_keys(s3) == set()
    names = [set(tree) for tree in trees]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    union = {name: body for tree in trees for name, body in tree.items()}
    assert union == {rel(k): v for k, v in objects.items()}


def test_concurrent_shards_sharing_a_raw_folder_do_not_break_each_other(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    objects = {f"{PREFIX}f{i:02d}.csv": b"z" * 500 for i in range(12)}
    fill(s3, objects)
    raw = tmp_path / "shared-raw"
    other: list[subprocess.CompletedProcess[str]] = []

    def start_the_other_shard(info: RequestInfo) -> None:
        # Shard 0 has opened its temp file and asks for the bytes: shard 1 starts now.
        if info.op == "GetObject" and not other:
            args = drain_args(tmp_path / "base-1", "--shard", "1/2", "--raw-dir", str(raw))
            other.append(run_cli(args, cli_env(s3_url), cwd=tmp_path))

    with FaultProxy(s3_url, before_forward=start_the_other_shard) as proxy:
        args = ["--shard", "0/2", "--raw-dir", str(raw), "--workers", "2"]
        first = drain(tmp_path, proxy.url, tmp_path / "base-0", *args)

    assert other and other[0].returncode in (0, 3), other[0].stderr
    assert first.returncode == 0, first.stderr
    mine = {k for k in objects if zlib.crc32(k.encode()) % 2 == 0}
    assert not bucket_keys(s3) & mine


# --- bad values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--min-age", "banana"], ["min age", "banana", "15m"]),
        (["--min-age=-5m"], ["min age", "-5m"]),
        (["--shard", "3/2"], ["shard", "3/2"]),
        (["--shard", "2/2"], ["shard", "2/2"]),
        (["--shard=-1/2"], ["shard", "-1/2"]),
        (["--shard", "-1/2"], ["shard", "-1/2"]),
        (["--shard", "a/b"], ["shard", "a/b"]),
        (["--max-objects", "0"], ["max objects"]),
        (["--max-objects", "many"], ["max objects", "many"]),
        (["--max-bytes", "lots"], ["max bytes", "lots"]),
        (["--max-delete", "-1"], ["max delete"]),
        (["--include", ""], ["pattern"]),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_bad_values_get_one_line_and_exit_2(
    tmp_path: Path, args: list[str], words: list[str]
) -> None:
    result = run_cli(
        drain_args(tmp_path / "base", *args), cli_env("http://127.0.0.1:9"), cwd=tmp_path
    )
    assert_clean_error(result, 2, *words)
    assert result.stdout == ""
    assert not (tmp_path / "base").exists()


def test_bad_value_from_the_environment_names_its_source(tmp_path: Path) -> None:
    env = cli_env("http://127.0.0.1:9", S3DRAIN_SHARD="4/4", S3DRAIN_MIN_AGE="soon")
    result = run_cli(drain_args(tmp_path / "base"), env, cwd=tmp_path)
    assert_clean_error(result, 2, "S3DRAIN_")


def _hold_lock(base: Path) -> int:
    (base / ".s3drain").mkdir(parents=True)
    fd = os.open(base / ".s3drain" / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, b"4242\n")
    return fd


def test_a_run_that_finds_the_lock_held_exits_3_with_json(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    """The built-in lock docs/scheduling.md tells cron users to rely on instead of flock."""
    fill(s3, TREE)
    base = tmp_path / "base"
    fd = _hold_lock(base)
    try:
        result, summary = drain_json(tmp_path, s3_url, base)
    finally:
        os.close(fd)
    assert_clean_error(result, 3, "another s3drain run", "4242")
    assert summary["exit_code"] == 3
    assert bucket_keys(s3) == set(TREE)
    assert local_tree(base / "raw") == {}
