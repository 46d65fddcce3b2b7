"""Key -> local path mapping, refusals, what `look()` sees on disk, and temporary names.

Written against the specification (keys map to `<raw>/<key relative to the prefix's folder>`,
unsafe keys are refused with a readable reason, two keys never share a path), not against the
current code.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from s3drain.local.paths import (
    FolderMarker,
    Kind,
    Layout,
    MappedPath,
    Refusal,
    is_temp_name,
    look,
    prefix_folder,
    relative_key,
    temp_name_for,
)
from s3drain.records import FileId

NAME_MAX = 255
PATH_MAX = 4096


def make_layout(tmp_path: Path, prefix: str = "exports/2024/") -> Layout:
    """A layout with the common Linux limits, so the tests do not depend on the host's disk."""
    raw = tmp_path / "base" / "raw"
    processed = tmp_path / "base" / "processed"
    raw.mkdir(parents=True)
    processed.mkdir(parents=True)
    return Layout(
        raw_dir=str(raw),
        processed_dir=str(processed),
        prefix=prefix,
        name_max=NAME_MAX,
        path_max=PATH_MAX,
    )


def mapped(layout: Layout, key: str, size: int = 10) -> MappedPath:
    result = layout.map_key(key, size)
    assert isinstance(result, MappedPath), f"{key!r} should map, got {result!r}"
    return result


def refused(layout: Layout, key: str, size: int = 10) -> Refusal:
    result = layout.map_key(key, size)
    assert isinstance(result, Refusal), f"{key!r} should be refused, got {result!r}"
    return result


# --- prefix_folder / relative_key ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "folder"),
    [
        ("exports/2024/", "exports/2024/"),
        ("exports/2024", "exports/"),
        ("exports", ""),
        ("", ""),
        ("a/b/c/", "a/b/c/"),
        ("a/b/c-", "a/b/"),
    ],
)
def test_prefix_folder(prefix: str, folder: str) -> None:
    assert prefix_folder(prefix) == folder


@pytest.mark.parametrize(
    ("key", "prefix", "rel"),
    [
        ("exports/2024/a.csv", "exports/2024/", "a.csv"),
        ("exports/2024/x/b.csv", "exports/2024/", "x/b.csv"),
        ("exports/2024-old/a.csv", "exports/2024", "2024-old/a.csv"),
        ("exports/2024/a.csv", "exports/2024", "2024/a.csv"),
        ("exports/2024/a.csv", "", "exports/2024/a.csv"),
        ("top.csv", "", "top.csv"),
    ],
)
def test_relative_key(key: str, prefix: str, rel: str) -> None:
    assert relative_key(key, prefix) == rel


def test_relative_key_rejects_a_key_outside_the_prefix_folder() -> None:
    with pytest.raises(ValueError, match="not under the prefix"):
        relative_key("imports/a.csv", "exports/2024/")


# --- map_key: keys that map ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "key", "rel"),
    [
        ("exports/2024/", "exports/2024/a.csv", "a.csv"),
        ("exports/2024/", "exports/2024/x/b.csv", "x/b.csv"),
        ("exports/2024", "exports/2024-old/a.csv", "2024-old/a.csv"),
        ("exports/2024", "exports/2024/a.csv", "2024/a.csv"),
        ("", "exports/2024/a.csv", "exports/2024/a.csv"),
        ("", "a", "a"),
    ],
)
def test_key_maps_below_the_prefix_folder(tmp_path: Path, prefix: str, key: str, rel: str) -> None:
    layout = make_layout(tmp_path, prefix)
    result = mapped(layout, key)
    assert result.rel == rel
    assert result.raw == str(tmp_path / "base" / "raw" / rel)
    assert result.processed == str(tmp_path / "base" / "processed" / rel)


@pytest.mark.parametrize(
    "rel",
    [
        "données/été.csv",
        "📦/🎉 party.csv",
        "my file with spaces.csv",
        "100%.csv",
        "a%2Fb.csv",
        "issue#12.csv",
        "what?.csv",
        "star*.csv",
        "[brackets].csv",
        "~tilde/$dollar.csv",
        "...three-dots",
        "..leading-dots",
        ".hidden",
        "x/.s3drain",  # only the `.s3drain-` prefix is reserved
        "a.s3drain-b",
        "日本語/ファイル.csv",
        "e\u0301.csv",  # decomposed é stays decomposed
    ],
)
def test_unusual_but_safe_names_map_unchanged(tmp_path: Path, rel: str) -> None:
    layout = make_layout(tmp_path)
    result = mapped(layout, "exports/2024/" + rel)
    assert result.rel == rel
    assert result.raw == os.path.join(layout.raw_dir, rel)
    assert result.processed == os.path.join(layout.processed_dir, rel)


# --- map_key: folder markers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "key"),
    [
        ("exports/2024/", "exports/2024/"),  # the prefix folder itself
        ("exports/2024/", "exports/2024/sub/"),
        ("exports/2024", "exports/"),  # the folder of a prefix without a trailing slash
        ("", "dir/"),
        ("", "a/b/c/"),
    ],
)
def test_zero_byte_key_ending_in_slash_is_a_folder_marker(
    tmp_path: Path, prefix: str, key: str
) -> None:
    layout = make_layout(tmp_path, prefix)
    assert layout.map_key(key, 0) == FolderMarker()


@pytest.mark.parametrize(
    "key", ["exports/2024/sub/", "exports/2024/", "exports/2024/a/b/"], ids=["sub", "root", "deep"]
)
def test_key_ending_in_slash_with_bytes_is_refused(tmp_path: Path, key: str) -> None:
    layout = make_layout(tmp_path)
    refusal = refused(layout, key, size=42)
    assert "/" in refusal.reason
    assert "42" in refusal.reason


# --- map_key: refusals --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "words"),
    [
        ("../x", ["'..'"]),
        ("a/../../b", ["'..'"]),
        ("a/..", ["'..'"]),
        ("..", ["'..'"]),
        ("./x", ["'.'"]),
        ("a/./b", ["'.'"]),
        ("a/.", ["'.'"]),
        ("/abs", ["absolute"]),
        ("/etc/passwd", ["absolute"]),
        ("a//b", ["empty"]),
        ("a/b//c.csv", ["empty"]),
        ("a\x00b", ["nul"]),
        ("a\nb", ["control", "u+000a"]),
        ("a\rb", ["control", "u+000d"]),
        ("a\tb", ["control", "u+0009"]),
        ("a\x01b", ["control", "u+0001"]),
        ("a\x1bb", ["control", "u+001b"]),
        ("a\x7fb", ["control", "u+007f"]),
        ("a/\x85b", ["control", "u+0085"]),
        (".s3drain-0123456789abcdef0123.part", [".s3drain-", "reserved"]),
        ("x/.s3drain-anything", [".s3drain-", "reserved"]),
        (".s3drain-/x", [".s3drain-", "reserved"]),
    ],
)
def test_unsafe_keys_are_refused_with_a_reason(tmp_path: Path, rel: str, words: list[str]) -> None:
    layout = make_layout(tmp_path)
    refusal = refused(layout, "exports/2024/" + rel)
    reason = refusal.reason.lower()
    for word in words:
        assert word in reason, f"{refusal.reason!r} should mention {word!r}"


def test_absolute_key_with_an_empty_prefix_is_refused(tmp_path: Path) -> None:
    layout = make_layout(tmp_path, prefix="")
    assert "absolute" in refused(layout, "/abs").reason


def test_dot_dot_key_with_an_empty_prefix_is_refused(tmp_path: Path) -> None:
    layout = make_layout(tmp_path, prefix="")
    assert "'..'" in refused(layout, "../outside.csv").reason


@pytest.mark.parametrize(
    ("segment", "ok"),
    [
        ("x" * 255, True),
        ("x" * 256, False),
        ("é" * 127, True),  # 254 bytes
        ("é" * 128, False),  # 256 bytes although only 128 characters
        ("x" + "é" * 127, True),  # 255 bytes
        ("€" * 85, True),  # 3 bytes each: 255
        ("€" * 86, False),  # 258
        ("😀" * 63, True),  # 4 bytes each: 252
        ("😀" * 64, False),  # 256
    ],
)
def test_name_max_counts_utf8_bytes(tmp_path: Path, segment: str, ok: bool) -> None:
    layout = make_layout(tmp_path)
    for rel in (segment, f"dir/{segment}", f"{segment}/file.csv"):
        result = layout.map_key("exports/2024/" + rel, 10)
        if ok:
            assert isinstance(result, MappedPath), (len(segment.encode()), result)
        else:
            assert isinstance(result, Refusal), len(segment.encode())
            assert str(len(segment.encode())) in result.reason
            assert "255" in result.reason


def _rel_of_length(total: int) -> str:
    """A relative path of exactly `total` bytes made of names no longer than 200 bytes."""
    parts: list[str] = []
    remaining = total
    while remaining > 201:
        parts.append("d" * 200)
        remaining -= 201
    parts.append("f" * remaining)
    rel = "/".join(parts)
    assert len(rel) == total
    return rel


@pytest.mark.parametrize(("excess", "ok"), [(-300, True), (-1, True), (1, False), (500, False)])
def test_path_max_counts_the_whole_local_path(tmp_path: Path, excess: int, ok: bool) -> None:
    """PATH_MAX - 1 bytes fit (the limit counts the terminating NUL); PATH_MAX + 1 do not."""
    layout = make_layout(tmp_path)
    # processed/ is longer than raw/, so the processed path is the longest local path.
    root_bytes = len(os.fsencode(layout.processed_dir)) + 1
    rel = _rel_of_length(PATH_MAX + excess - root_bytes)
    result = layout.map_key("exports/2024/" + rel, 10)
    if ok:
        assert isinstance(result, MappedPath)
        assert len(os.fsencode(result.processed)) == PATH_MAX + excess
    else:
        assert isinstance(result, Refusal)
        assert str(PATH_MAX) in result.reason


def test_path_max_applies_to_the_processed_path_too(tmp_path: Path) -> None:
    raw = tmp_path / "r"
    processed = tmp_path / ("p" * 200) / ("q" * 200)
    raw.mkdir()
    processed.mkdir(parents=True)
    layout = Layout(str(raw), str(processed), "", name_max=NAME_MAX, path_max=PATH_MAX)
    rel = _rel_of_length(PATH_MAX - len(os.fsencode(str(raw))) - 1 - 10)
    result = layout.map_key(rel, 10)
    assert isinstance(result, Refusal)


def test_layout_create_reads_the_file_system_limits(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    layout = Layout.create(str(raw), str(tmp_path / "processed"), "p/", probe=False)
    assert layout.name_max == os.pathconf(str(tmp_path), "PC_NAME_MAX")
    assert layout.path_max == os.pathconf(str(tmp_path), "PC_PATH_MAX")
    assert layout.raw_dir == str(raw)
    assert layout.case_insensitive is False


# --- symbolic links inside raw/ -----------------------------------------------------------------


def test_symlink_inside_raw_pointing_outside_is_refused(tmp_path: Path) -> None:
    layout = make_layout(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.symlink(outside, os.path.join(layout.raw_dir, "escape"))
    for key in ("exports/2024/escape/a.csv", "exports/2024/escape/deeper/b.csv"):
        refusal = refused(layout, key)
        assert "link" in refusal.reason.lower()
    # Its neighbours are unaffected.
    assert mapped(layout, "exports/2024/other/a.csv").rel == "other/a.csv"


def test_symlink_inside_processed_pointing_outside_is_refused(tmp_path: Path) -> None:
    layout = make_layout(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.symlink(outside, os.path.join(layout.processed_dir, "escape"))
    assert "link" in refused(layout, "exports/2024/escape/a.csv").reason.lower()


def test_symlink_inside_raw_pointing_inside_raw_is_allowed(tmp_path: Path) -> None:
    layout = make_layout(tmp_path)
    os.mkdir(os.path.join(layout.raw_dir, "real"))
    os.symlink(os.path.join(layout.raw_dir, "real"), os.path.join(layout.raw_dir, "alias"))
    assert mapped(layout, "exports/2024/alias/a.csv").rel == "alias/a.csv"


def test_symlink_to_a_sibling_with_the_same_name_prefix_is_refused(tmp_path: Path) -> None:
    # `<base>/raw-evil` starts with the string `<base>/raw` but is outside raw/.
    layout = make_layout(tmp_path)
    evil = tmp_path / "base" / "raw-evil"
    evil.mkdir()
    os.symlink(evil, os.path.join(layout.raw_dir, "x"))
    assert isinstance(layout.map_key("exports/2024/x/a.csv", 10), Refusal)


def test_symlink_that_appears_after_an_earlier_key_in_that_folder_is_refused(
    tmp_path: Path,
) -> None:
    """The check must reflect the disk now, not what the folder was when first seen."""
    layout = make_layout(tmp_path)
    assert mapped(layout, "exports/2024/late/first.csv").rel == "late/first.csv"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.symlink(outside, os.path.join(layout.raw_dir, "late"))
    result = layout.map_key("exports/2024/late/second.csv", 10)
    assert isinstance(result, Refusal), f"a key under a symlink out of raw/ mapped: {result!r}"


# --- two keys never share a path ----------------------------------------------------------------

TRICKY_KEYS = [
    "a",
    "a/",
    "a/b",
    "A",
    "a b",
    "a%2Fb",
    "a/b/",
    "a/b/c",
    "a.b",
    "a\\b",
    "a b ",
    " a",
    "é",
    "e\u0301",
    "a..b",
    "a/.b",
    "a/b.",
    "a/B",
    "ab",
    "a_b",
    "a-b",
    "a+b",
    "a%20b",
    "../a",
    "./a",
    "a//b",
    "/a",
    "a/./b",
    "a/../a",
    ".s3drain-a",
]


@pytest.mark.parametrize("prefix", ["", "p/", "p"])
@pytest.mark.parametrize("size", [0, 7])
def test_two_keys_never_map_to_the_same_path(tmp_path: Path, prefix: str, size: int) -> None:
    layout = make_layout(tmp_path, prefix)
    folder = prefix_folder(prefix)
    raw_owner: dict[str, str] = {}
    processed_owner: dict[str, str] = {}
    mapped_count = 0
    for tail in TRICKY_KEYS:
        key = folder + tail
        result = layout.map_key(key, size)
        if not isinstance(result, MappedPath):
            continue
        mapped_count += 1
        raw_real = os.path.normpath(result.raw)
        processed_real = os.path.normpath(result.processed)
        assert raw_real not in raw_owner, f"{key!r} and {raw_owner[raw_real]!r} share {raw_real}"
        assert processed_real not in processed_owner
        raw_owner[raw_real] = key
        processed_owner[processed_real] = key
        # And the path really is below raw/: normalising changes nothing.
        assert raw_real == result.raw
        assert raw_real.startswith(layout.raw_dir + os.sep)
    assert mapped_count >= 20


# --- look() -------------------------------------------------------------------------------------


def test_look_missing(tmp_path: Path) -> None:
    found = look(str(tmp_path / "nothing.csv"))
    assert found.kind is Kind.MISSING
    assert found.file is None


def test_look_regular_file_says_which_file_it_is(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"hello world")
    found = look(str(path))
    info = os.stat(path)
    assert found.kind is Kind.FILE
    assert found.size == 11
    assert found.path == str(path)
    assert found.file == FileId(info.st_dev, info.st_ino, 11, info.st_mtime_ns)


def test_look_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    found = look(str(path))
    assert (found.kind, found.size) == (Kind.FILE, 0)


def test_look_folder_is_dir(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    assert look(str(tmp_path / "folder")).kind is Kind.DIR


@pytest.mark.parametrize("depth", ["file/x", "file/x/y.csv"])
def test_look_below_a_file_is_blocked(tmp_path: Path, depth: str) -> None:
    (tmp_path / "file").write_bytes(b"data")
    assert look(str(tmp_path / depth)).kind is Kind.BLOCKED


@pytest.mark.parametrize("target", ["file", "folder", "dangling"])
def test_look_symlink_is_other(tmp_path: Path, target: str) -> None:
    (tmp_path / "file").write_bytes(b"data")
    (tmp_path / "folder").mkdir()
    link = tmp_path / "link"
    os.symlink(tmp_path / target, link)
    found = look(str(link))
    assert found.kind is Kind.OTHER
    assert found.file is None


def test_look_fifo_is_other(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert look(str(fifo)).kind is Kind.OTHER


def test_look_two_names_of_one_file_are_the_same_file(tmp_path: Path) -> None:
    """A hard link (or a folder symlink inside raw/) gives one file two paths: `look` says so,
    which is what keeps one file from vouching for two keys."""
    (tmp_path / "a.csv").write_bytes(b"x")
    os.link(tmp_path / "a.csv", tmp_path / "b.csv")
    first, second = look(str(tmp_path / "a.csv")), look(str(tmp_path / "b.csv"))
    assert first.file is not None and second.file is not None
    assert (first.file.device, first.file.inode) == (second.file.device, second.file.inode)


# --- temporary names ----------------------------------------------------------------------------

ETAG = "900150983cd24fb0d6963f7d28e17f72"


def test_temp_name_is_hidden_short_and_beside_the_target(tmp_path: Path) -> None:
    target = str(tmp_path / "raw" / "x" / "data.csv")
    temp = temp_name_for(target, "exports/2024/x/data.csv", ETAG)
    assert os.path.dirname(temp) == os.path.dirname(target)
    name = os.path.basename(temp)
    assert name.startswith(".")
    assert len(name.encode()) < 64
    assert is_temp_name(name)
    assert name != "data.csv"


@pytest.mark.parametrize("long_name", ["x" * 255, "é" * 127 + "x", "😀" * 63 + "abc"])
def test_temp_name_stays_short_for_a_255_byte_target(tmp_path: Path, long_name: str) -> None:
    assert len(long_name.encode()) == 255
    target = str(tmp_path / long_name)
    temp = temp_name_for(target, "k/" + long_name, ETAG)
    assert len(os.path.basename(temp).encode()) < 64
    assert os.path.dirname(temp) == str(tmp_path)


def test_temp_name_is_deterministic() -> None:
    first = temp_name_for("/b/raw/a.csv", "p/a.csv", ETAG)
    second = temp_name_for("/b/raw/a.csv", "p/a.csv", ETAG)
    assert first == second


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (("p/a.csv", ETAG), ("p/b.csv", ETAG)),
        (("p/a.csv", ETAG), ("p/a.csv", "d41d8cd98f00b204e9800998ecf8427e")),
        (("p/a.csv", ETAG), ("p/a.csv", ETAG + "-2")),
        (("p/a.csv", ETAG), ("P/a.csv", ETAG)),
        (("ab", "c"), ("a", "bc")),  # the boundary between key and ETag matters
    ],
)
def test_temp_name_differs_for_another_key_or_etag(
    one: tuple[str, str], other: tuple[str, str]
) -> None:
    target = "/b/raw/a.csv"
    assert temp_name_for(target, *one) != temp_name_for(target, *other)


def test_temp_names_for_many_keys_are_distinct() -> None:
    names = {temp_name_for("/b/raw/f", f"p/{i}", ETAG) for i in range(5000)}
    assert len(names) == 5000


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("data.csv", False),
        (".hidden", False),
        (".s3drain", False),
        ("s3drain-x.part", False),
        ("x.part", False),
        ("a.s3drain-b.part", False),
    ],
)
def test_is_temp_name_for_ordinary_names(name: str, expected: bool) -> None:
    assert is_temp_name(name) is expected


def test_a_key_can_never_take_a_temp_name(tmp_path: Path) -> None:
    layout = make_layout(tmp_path)
    temp = os.path.basename(temp_name_for(os.path.join(layout.raw_dir, "a.csv"), "k", ETAG))
    assert isinstance(layout.map_key("exports/2024/" + temp, 10), Refusal)
    assert isinstance(layout.map_key("exports/2024/sub/" + temp, 10), Refusal)
