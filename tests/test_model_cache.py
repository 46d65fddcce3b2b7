"""s3/model_cache.py: botocore's model files kept parsed. What comes out of the cache is what
botocore's loader parses (its OrderedDicts too); a changed source, a damaged file, a file or
folder anyone else could write, or a pickle kept for another source is never used; the cache
can be turned off, and one that cannot be written is no error."""

from __future__ import annotations

import json
import os
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any

import botocore.loaders
import pytest
from botocore.loaders import JSONFileLoader

from s3drain.s3.model_cache import CachedJSONFileLoader, cache_folder

S3_MODEL = sorted(
    (Path(botocore.loaders.Loader.BUILTIN_DATA_PATH) / "s3").glob("*/service-2.json.gz")
)[-1]


def without_ext(path: Path) -> str:
    return str(path).removesuffix(".gz").removesuffix(".json")


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file botocore's JSON loader parses."""
    parsed: list[str] = []
    real = JSONFileLoader.load_file

    def counting(self: JSONFileLoader, file_path: str) -> Any:
        parsed.append(file_path)
        return real(self, file_path)

    monkeypatch.setattr(JSONFileLoader, "load_file", counting)
    return parsed


def only_pickle(folder: Path) -> Path:
    [found] = folder.glob("*.pickle")
    return found


def test_what_the_cache_gives_is_what_botocore_parses(tmp_path: Path, parses: list[str]) -> None:
    loader = CachedJSONFileLoader(tmp_path / "cache")
    first = loader.load_file(without_ext(S3_MODEL))
    second = loader.load_file(without_ext(S3_MODEL))
    assert len(parses) == 1  # the second came from the cache
    expected = JSONFileLoader().load_file(without_ext(S3_MODEL))
    assert first == second == expected
    assert type(second) is OrderedDict
    assert type(second["shapes"]["GetObjectOutput"]["members"]) is OrderedDict
    assert list(second["operations"]) == list(expected["operations"])  # the order too
    assert (tmp_path / "cache").stat().st_mode & 0o777 == 0o700
    assert only_pickle(tmp_path / "cache").stat().st_mode & 0o777 == 0o600


def test_a_changed_source_is_parsed_again(tmp_path: Path, parses: list[str]) -> None:
    source = tmp_path / "models" / "thing.json"
    source.parent.mkdir()
    source.write_text(json.dumps({"version": 1}))
    loader = CachedJSONFileLoader(tmp_path / "cache")
    assert loader.load_file(without_ext(source)) == {"version": 1}
    source.write_text(json.dumps({"version": 22}))  # another size
    assert loader.load_file(without_ext(source)) == {"version": 22}
    stat = source.stat()
    source.write_text(json.dumps({"version": 33}))  # the same size, another time
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert loader.load_file(without_ext(source)) == {"version": 33}
    assert len(parses) == 3
    assert loader.load_file(without_ext(source)) == {"version": 33}
    assert len(parses) == 3


@pytest.mark.parametrize("what", ["file", "folder", "owner"])
def test_a_cache_someone_else_could_have_written_is_not_read(
    tmp_path: Path, parses: list[str], what: str
) -> None:
    loader = CachedJSONFileLoader(tmp_path / "cache")
    loader.load_file(without_ext(S3_MODEL))
    kept = only_pickle(tmp_path / "cache")
    if what == "file":
        kept.chmod(0o666)
    elif what == "folder":
        kept.parent.chmod(0o777)
    else:
        if os.geteuid() != 0:
            pytest.skip("only root can give a file to another user")
        os.chown(kept, 12345, 12345)
    assert loader.load_file(without_ext(S3_MODEL))["metadata"]["serviceId"] == "S3"
    assert len(parses) == 2  # parsed from the source again


def test_a_damaged_pickle_is_parsed_again_and_replaced(tmp_path: Path, parses: list[str]) -> None:
    loader = CachedJSONFileLoader(tmp_path / "cache")
    loader.load_file(without_ext(S3_MODEL))
    kept = only_pickle(tmp_path / "cache")
    kept.write_bytes(kept.read_bytes()[:1000])
    assert loader.load_file(without_ext(S3_MODEL))["metadata"]["serviceId"] == "S3"
    assert loader.load_file(without_ext(S3_MODEL))["metadata"]["serviceId"] == "S3"
    assert len(parses) == 2  # once more, then from the rewritten pickle


def test_a_pickle_kept_for_another_source_is_not_used(tmp_path: Path, parses: list[str]) -> None:
    one, other = tmp_path / "one.json", tmp_path / "other.json"
    one.write_text('{"name": "one"}')
    other.write_text('{"name": "other"}')
    cache = tmp_path / "cache"
    loader = CachedJSONFileLoader(cache)
    loader.load_file(without_ext(one))
    kept_one = only_pickle(cache)
    loader.load_file(without_ext(other))
    [kept_other] = [p for p in cache.glob("*.pickle") if p != kept_one]
    shutil.copyfile(kept_one, kept_other)  # other's name, one's content
    assert loader.load_file(without_ext(other)) == {"name": "other"}
    assert len(parses) == 3


def test_no_source_is_botocores_answer(tmp_path: Path) -> None:
    loader = CachedJSONFileLoader(tmp_path / "cache")
    assert loader.load_file(str(tmp_path / "missing")) is None
    assert not (tmp_path / "cache").exists()


def test_a_cache_that_cannot_be_written_is_no_error(tmp_path: Path, parses: list[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    loader = CachedJSONFileLoader(blocker / "cache")
    for _ in range(2):
        assert loader.load_file(without_ext(S3_MODEL))["metadata"]["serviceId"] == "S3"
    assert len(parses) == 2


def test_where_the_cache_lives_and_how_it_is_turned_off() -> None:
    assert cache_folder({"HOME": "/home/u"}) == Path("/home/u/.cache/s3drain/botocore-models")
    assert cache_folder({"HOME": "/home/u", "XDG_CACHE_HOME": "/c"}) == Path(
        "/c/s3drain/botocore-models"
    )
    assert cache_folder({}) is None  # no home (some cron set-ups): no cache
    for off in ("off", "OFF", "0", "no", "false"):
        assert cache_folder({"HOME": "/home/u", "S3DRAIN_MODEL_CACHE": off}) is None
    assert cache_folder({"HOME": "/home/u", "s3drain_model_cache": "off"}) is None
    assert cache_folder({"HOME": "/home/u", "S3DRAIN_MODEL_CACHE": "on"}) is not None
    off_loader = CachedJSONFileLoader(None)
    assert off_loader.load_file(without_ext(S3_MODEL))["metadata"]["serviceId"] == "S3"
