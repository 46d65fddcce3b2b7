"""What can be checked of `Dockerfile` and `compose.yaml` without a Docker engine: the image runs
our console script as a non-root user, the compose commands parse with our real parser and load
into valid settings, the folders compose mounts exist, and the names it sets are ones we read.
"""

from __future__ import annotations

import json
import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from s3drain.cli.parser import build_parser
from s3drain.config.sources import ENV_NAMES, Sources
from s3drain.drain.settings import load_drain_settings
from s3drain.ingest.plan import Layout, collect, plan
from s3drain.ingest.settings import load_ingest_settings

REPO = Path(__file__).resolve().parents[1]
yaml = pytest.importorskip("yaml")  # comes with moto[server]; types are not needed here


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.partition(" ") for line in lines)
        if word and not word.startswith("#")
    ]


def instruction(name: str) -> list[str]:
    return [args for word, args in dockerfile() if word == name]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return loaded


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"][name]
    return found


def flags_of(command: list[str]) -> tuple[Any, dict[str, object]]:
    """What `s3drain <command>` would see: the parsed arguments and the flags `main` passes on."""
    args = build_parser().parse_args(command)
    skip = ("command", "env_file", "paths")
    return args, {k: v for k, v in vars(args).items() if k not in skip}


def container_environment(name: str) -> dict[str, str]:
    # config/.env is not in git; stand-in credentials take its place.
    env = {"AWS_ACCESS_KEY_ID": "lake-admin", "AWS_SECRET_ACCESS_KEY": "change-me-please"}
    env.update({k: str(v) for k, v in service(name).get("environment", {}).items()})
    return env


# -- Dockerfile -------------------------------------------------------------------------------


def test_the_image_is_slim_python_of_the_version_we_support() -> None:
    (base,) = instruction("FROM")
    assert base == "python:3.11-slim"
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"


def test_the_entrypoint_is_our_console_script() -> None:
    (entrypoint,) = instruction("ENTRYPOINT")
    assert json.loads(entrypoint) == ["s3drain"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["s3drain"] == "s3drain.cli.main:run_program"
    assert any("pip install /src" in run for run in instruction("RUN"))


def test_the_image_runs_as_a_non_root_user_in_data() -> None:
    users = instruction("USER")
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert any(f"--uid {user}" in run and f"chown {user}" in run for run in instruction("RUN"))
    assert instruction("WORKDIR")[-1] == "/data"


def test_secrets_stay_out_of_the_build_context() -> None:
    rules = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert "s3drain" in allowed
    assert not any(name.startswith("config") or name.startswith(".env") for name in allowed)


# -- compose.yaml -----------------------------------------------------------------------------


def test_compose_runs_minio_then_ingest_then_drain() -> None:
    services = compose()["services"]
    assert set(services) == {"minio", "ingest", "drain"}
    assert services["minio"]["image"].startswith("minio/minio:")
    assert "healthcheck" in services["minio"]
    assert services["ingest"]["depends_on"]["minio"]["condition"] == "service_healthy"
    condition = services["drain"]["depends_on"]["ingest"]["condition"]
    assert condition == "service_completed_successfully"
    for name in ("ingest", "drain"):
        assert services[name]["build"] == "."
        assert services[name]["env_file"] == "config/.env"


def test_the_ingest_command_parses_and_reads_the_mounted_samples() -> None:
    ingest = service("ingest")
    args, flags = flags_of(ingest["command"])

    assert args.command == "ingest"
    assert (args.layer, args.origin, args.spec) == ("Raw", "Local", "Movies")
    assert args.addressing_style == "path"
    mounts = {m.split(":")[1]: m.split(":") for m in ingest["volumes"]}
    for path in args.paths:
        host, _, *mode = mounts[path]
        assert mode == ["ro"], "the samples are input: mount them read-only"
        assert (REPO / host).is_dir(), f"{host} is mounted but not in the repository"

    settings = load_ingest_settings(
        Sources(flags, container_environment("ingest"), None), args.paths
    )
    assert settings.bucket == "lake"
    assert settings.s3.endpoint_url == "http://minio:9000"
    assert settings.s3.addressing_style == "path"


def test_every_sample_gets_a_key_so_the_compose_ingest_exits_0() -> None:
    files, ignored = collect([REPO / "samples"])
    planned = plan(files, Layout("Raw", "Local", "Movies", None, date(2022, 5, 2)))
    assert len(planned) >= 2
    assert ignored == []
    assert all(p.refused is None for p in planned), [p.refused for p in planned]
    assert {p.key for p in planned} >= {"Raw/Local/CSV/Movies/2022/05/02/movies.csv"}


def test_the_drain_command_parses_and_writes_into_a_volume() -> None:
    drain = service("drain")
    args, flags = flags_of(drain["command"])

    assert args.command == "drain"
    assert args.prefix == "Raw/Local/CSV/Movies/"
    assert args.addressing_style == "path"
    named = set(compose()["volumes"])
    targets = {m.split(":")[1]: m.split(":")[0] for m in drain["volumes"]}
    base = Path(args.local_base_path)
    volume = next(t for t in targets if base == Path(t) or Path(t) in base.parents)
    assert targets[volume] in named, "the drained files must outlive the container"

    settings = load_drain_settings(Sources(flags, container_environment("drain"), None))
    assert settings.bucket == "lake"
    assert settings.s3.endpoint_url == "http://minio:9000"


def test_compose_sets_only_names_that_config_reads() -> None:
    known = {name for names in ENV_NAMES.values() for name in names}
    for name in ("ingest", "drain"):
        assert set(service(name)["environment"]) <= known


def test_the_credentials_file_compose_reads_is_kept_out_of_git() -> None:
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert "config/.env" in ignored
    for name in ("minio", "ingest", "drain"):
        assert service(name)["env_file"] == "config/.env"
