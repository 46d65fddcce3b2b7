"""What one bench run is asked to do: scenarios, contenders, servers, repeats, limits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.contenders import Contender
from benchmarks.linkcheck import CHECK_BYTES
from benchmarks.scenarios import SERVER_SCENARIOS, Scenario

DEFAULT_BUCKET = "s3drain-bench"
FULL_LEVELS = (4, 16, 64)
SMOKE_LEVELS = (4, 16)
FULL_TIMEOUT = 1800.0
SMOKE_TIMEOUT = 120.0
# Where the contenders write: a journaled ext4 image the bench mounts ("loop"), falling back
# to the work folder's own file system with a note; or that file system ("workdir").
DEST_LOOP = "loop"
DEST_WORKDIR = "workdir"


@dataclass(frozen=True)
class BenchConfig:
    scenarios: tuple[Scenario, ...]
    contenders: tuple[Contender, ...]
    workdir: Path
    endpoint_url: str | None = None
    # Our own servers, one after the other: moto patched to honour DeleteObjects' per-key
    # ETag as AWS documents ("moto-aws-like": what s3drain meets on AWS, batched exact
    # deletes), moto ignoring that ETag ("moto": one exact delete per object), SeaweedFS
    # ("seaweedfs": a server that is not the limit). Ignored with endpoint_url.
    servers: tuple[str, ...] = ("moto-aws-like",)
    bucket: str = DEFAULT_BUCKET
    region: str | None = None
    repeat: int = 1
    # Runs per contender in the scenarios of big objects, whose figures vary most from run to
    # run on two shared cores; None: ``repeat``.
    repeat_big: int | None = None
    timeout: float = FULL_TIMEOUT
    ceiling_levels: tuple[int, ...] = FULL_LEVELS
    with_ceiling: bool = True
    # Bytes per stream when a link is measured; the smoke run makes it small.
    link_check_bytes: int = CHECK_BYTES
    dest: str = DEST_WORKDIR

    def runs(self, scenario: Scenario) -> int:
        if scenario.small_objects or self.repeat_big is None:
            return self.repeat
        return self.repeat_big

    def scenarios_on(self, server: str) -> tuple[Scenario, ...]:
        """The chosen scenarios that run on ``server``, in the order asked for."""
        names = SERVER_SCENARIOS.get(server, ())
        return tuple(s for s in self.scenarios if s.name in names)
