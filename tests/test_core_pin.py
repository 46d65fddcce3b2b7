"""drain/core_pin.py: the run on one core while its objects are small, every allowed core
while they are not; the core the others use least; only in a process that is s3drain's own."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from s3drain.drain import direct_setup
from s3drain.drain.core_pin import (
    MOVE_MARGIN,
    PIN_BELOW,
    CorePin,
    Sample,
    choose,
    others_load,
    read_core_times,
    set_all_threads,
)
from s3drain.drain.run import run_drain
from tests.support.drainkit import bucket_keys, drain_settings, local_tree
from tests.support.proxy import FaultProxy
from tests.support.server import S3Client
from tests.test_cli_e2e import PREFIX, ROOT, cli_env, drain_args, fill, run_cli

STAT = """cpu  300 0 100 1000 50 0 0 0 0 0
cpu0 100 0 50 500 25 0 0 0 0 0
cpu1 200 0 50 500 25 0 0 0 0 0
intr 12345
ctxt 999
"""


def test_core_times_are_read_per_core_with_iowait_as_idle(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text(STAT)
    assert read_core_times(str(stat)) == {0: (150, 675), 1: (250, 775)}


def test_the_real_proc_stat_names_every_core_this_process_may_use() -> None:
    assert set(os.sched_getaffinity(0)) <= set(read_core_times())


def _sample(own: float, **cores: tuple[int, int]) -> Sample:
    return Sample({int(name[1:]): ticks for name, ticks in cores.items()}, own)


def test_others_load_takes_the_runs_own_time_out_of_its_own_core_only() -> None:
    before = _sample(1.0, c0=(0, 0), c1=(0, 0))
    after = _sample(1.4, c0=(60, 100), c1=(50, 100))  # 100 ticks of 0.01 s: a second
    loads = others_load(before, after, core=1, tick=0.01)
    assert loads[0] == pytest.approx(0.6)
    assert loads[1] == pytest.approx(0.1)  # 0.5 s busy, 0.4 of it the run's
    unpinned = others_load(before, after, core=None, tick=0.01)
    assert unpinned == {0: pytest.approx(0.6), 1: pytest.approx(0.5)}
    # Never below nothing: the run's time can exceed what the counters caught.
    assert others_load(before, _sample(9.0, c0=(1, 100), c1=(1, 100)), 0, 0.01)[0] == 0.0


def test_the_choice_stays_unless_another_core_is_freer_by_the_margin() -> None:
    allowed = frozenset({0, 1, 2})
    assert choose({0: 0.5, 1: 0.5 - MOVE_MARGIN / 2, 2: 0.9}, allowed, current=0) == 0
    assert choose({0: 0.5, 1: 0.5 - MOVE_MARGIN * 1.5, 2: 0.9}, allowed, current=0) == 1
    # First choice: among the freest, the highest-numbered (core 0 carries the interrupts).
    assert choose({0: 0.0, 1: 0.05, 2: 0.9}, allowed, current=None) == 1
    # Only allowed cores, even when another is idle.
    assert choose({0: 0.0, 1: 0.8, 2: 0.9}, frozenset({1, 2}), current=None) == 2
    assert choose({}, frozenset({3, 5}), current=None) == 5


class _Fake:
    """/proc/stat and the run's CPU as a test sets them; the cores each apply named."""

    def __init__(self) -> None:
        self.ticks = {0: [0, 0], 1: [0, 0]}
        self.own = 0.0
        self.applied: list[frozenset[int]] = []
        self.fail = False
        self.samples = 0

    def busy(self, core: int, share: float, seconds: float = 1.0) -> None:
        for cpu, ticks in self.ticks.items():
            ticks[1] += int(seconds * 100)
            if cpu == core:
                ticks[0] += int(seconds * 100 * share)

    def sample(self) -> Sample:
        self.samples += 1
        if self.fail:
            raise OSError("no /proc")
        return Sample({cpu: (t[0], t[1]) for cpu, t in self.ticks.items()}, self.own)

    def pin(self, *, interval: float = 3600) -> CorePin:
        return CorePin(
            frozenset({0, 1}),
            interval=interval,
            sample=self.sample,
            apply=self.applied.append,
            tick=0.01,
        )


def _interval_ends(pin: CorePin) -> None:
    """The watch thread's choice at the end of an interval, without waiting for it."""
    with pin._lock:
        pin._choose()


def test_small_objects_pin_the_run_to_the_core_others_use_least() -> None:
    fake = _Fake()
    pin = fake.pin()
    fake.busy(1, 0.9)  # something else holds core 1
    pin.started(4096)
    assert pin.core == 0
    assert fake.applied == [frozenset({0})]
    pin.close()
    assert fake.applied[-1] == frozenset({0, 1})
    assert pin.core is None


def test_large_objects_never_pin_and_a_turn_to_large_ones_lets_go() -> None:
    fake = _Fake()
    pin = fake.pin()
    pin.started(PIN_BELOW)
    assert pin.core is None and fake.applied == []
    pin.close()
    assert fake.applied == []  # never pinned: nothing to give back

    fake = _Fake()
    pin = fake.pin()
    pin.started(1000)
    assert pin.core == 1
    for _ in range(3):
        pin.started(PIN_BELOW * 4)
    pin.started(1000)
    _interval_ends(pin)
    assert pin.core is None
    assert fake.applied[-1] == frozenset({0, 1})
    # Small again: pinned again; nothing started in an interval: as it was.
    pin.started(100)
    _interval_ends(pin)
    assert pin.core == 1
    _interval_ends(pin)
    assert pin.core == 1 and fake.applied[-1] == frozenset({1})
    pin.close()


def test_the_run_moves_when_others_take_its_core_and_only_then() -> None:
    fake = _Fake()
    pin = fake.pin()
    pin.started(4096)
    assert pin.core == 1
    # The run's own second on core 1 is not a reason to leave it.
    fake.own += 0.95
    fake.busy(1, 1.0)
    pin.started(4096)
    _interval_ends(pin)
    assert pin.core == 1 and pin.moves == 0
    # A server pinned to core 1 takes half of it beside the run: off to core 0.
    fake.own += 0.5
    fake.busy(1, 1.0)
    pin.started(4096)
    _interval_ends(pin)
    assert pin.core == 0 and pin.moves == 1
    assert fake.applied[-1] == frozenset({0})
    pin.close()


def test_without_proc_stat_the_run_is_never_pinned() -> None:
    fake = _Fake()
    fake.fail = True
    pin = fake.pin()
    pin.started(10)
    assert pin.core is None and fake.applied == []
    pin.close()


def test_the_watch_thread_chooses_every_interval_and_ends_with_close() -> None:
    """And an interval in which nothing started changes nothing and reads nothing."""
    fake = _Fake()
    pin = fake.pin(interval=0.01)
    pin.started(10)
    deadline = time.monotonic() + 10
    while len(fake.applied) < 5:
        assert time.monotonic() < deadline
        pin.started(10)
        time.sleep(0.01)
    pin.close()
    assert fake.applied[-1] == frozenset({0, 1})
    assert not any(t.name == "s3drain-core" for t in threading.enumerate())
    settled = len(fake.applied)
    time.sleep(0.05)
    assert len(fake.applied) == settled

    idle = _Fake()
    pin = idle.pin(interval=0.01)
    pin.started(10)
    read = idle.samples
    time.sleep(0.1)
    assert idle.samples == read
    assert idle.applied == [frozenset({1})] and pin.core == 1
    pin.close()


def test_a_bug_in_the_watch_thread_gives_the_cores_back_and_crashes_the_run() -> None:
    fake = _Fake()
    crashes: list[tuple[BaseException, str]] = []
    pin = CorePin(
        frozenset({0, 1}),
        interval=0.01,
        sample=fake.sample,
        apply=fake.applied.append,
        tick=0.01,
        crashed=lambda exc, where: crashes.append((exc, where)),
    )
    pin.started(10)
    assert pin.core == 1
    fake.ticks = None  # type: ignore[assignment]  # the next sample breaks
    deadline = time.monotonic() + 10
    while not crashes:
        assert time.monotonic() < deadline
        pin.started(10)
        time.sleep(0.01)
    assert isinstance(crashes[0][0], AttributeError)
    assert "core" in crashes[0][1]
    assert fake.applied[-1] == frozenset({0, 1}) and pin.core is None
    pin.close()
    assert len(fake.applied) == 2


def _affinities() -> set[frozenset[int]]:
    found = set()
    for name in os.listdir("/proc/self/task"):
        try:
            found.add(frozenset(os.sched_getaffinity(int(name))))
        except OSError:
            continue
    return found


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable cores")
def test_every_thread_of_the_process_is_moved_and_given_back() -> None:
    allowed = frozenset(os.sched_getaffinity(0))
    release = threading.Event()
    earlier = threading.Thread(target=release.wait)
    earlier.start()
    try:
        core = max(allowed)
        set_all_threads(frozenset({core}))
        assert _affinities() == {frozenset({core})}
        later = threading.Thread(target=lambda: None)
        later.start()  # a thread started now takes its creator's core
        later.join()
        set_all_threads(allowed)
        assert _affinities() == {allowed}
    finally:
        set_all_threads(allowed)
        release.set()
        earlier.join()


def _objects(count: int, size: int) -> dict[str, bytes]:
    return {f"{PREFIX}f{i:04d}.bin": os.urandom(size) for i in range(count)}


def _cores_of(pid: int) -> set[str]:
    cores = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            status = Path(f"/proc/{pid}/task/{task}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Cpus_allowed_list:"):
                cores.add(line.split(":", 1)[1].strip())
    return cores


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable cores")
def test_the_cli_runs_small_objects_on_one_core_and_says_so(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    objects = _objects(400, 2000)
    fill(s3, objects)
    with FaultProxy(s3_url, latency=0.02) as proxy:
        run = subprocess.Popen(
            [sys.executable, "-m", "s3drain", *drain_args(tmp_path), "-vv", "--processes", "0"],
            env=cli_env(proxy.url),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen: list[set[str]] = []
        while run.poll() is None:
            try:
                seen.append(_cores_of(run.pid))
            except FileNotFoundError:
                break
            time.sleep(0.02)
        _out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert "threads on core" in err
    # At some instant every thread of the run was on one and the same core.
    assert any(len(cores) == 1 and "," not in next(iter(cores)) for cores in seen if cores)
    assert local_tree(tmp_path / "raw") == {k[len(PREFIX) :]: v for k, v in objects.items()}
    assert bucket_keys(s3) == set()

    fill(s3, objects)
    off = run_cli(
        [*drain_args(tmp_path / "off"), "-vv", "--processes", "0", "--pin", "off"], cli_env(s3_url)
    )
    assert off.returncode == 0, off.stderr
    assert "threads on core" not in off.stderr
    assert bucket_keys(s3) == set()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable cores")
def test_large_objects_run_on_every_core(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    objects = _objects(6, PIN_BELOW * 2)
    fill(s3, objects)
    run = run_cli([*drain_args(tmp_path), "-vv", "--processes", "0"], cli_env(s3_url))
    assert run.returncode == 0, run.stderr
    assert "threads on core" not in run.stderr
    assert local_tree(tmp_path / "raw") == {k[len(PREFIX) :]: v for k, v in objects.items()}


@pytest.mark.parametrize(
    "case", [(False, True, False), (True, True, True), (True, False, False)], ids=str
)
def test_only_a_process_of_s3drains_own_is_pinned(
    tmp_path: Path,
    s3_url: str,
    s3: S3Client,
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[bool, bool, bool],
) -> None:
    own_process, pin, pinned = case  # run_drain's own_process, --pin auto, a pin made
    made: list[frozenset[int]] = []

    class Recorder(CorePin):
        def __init__(self, allowed: frozenset[int], **kwargs: object) -> None:
            made.append(allowed)
            super().__init__(allowed, apply=lambda _: None)

    monkeypatch.setattr(direct_setup, "CorePin", Recorder)
    monkeypatch.setattr(direct_setup, "usable_core_set", lambda: frozenset({0, 1}))
    fill(s3, _objects(5, 100))
    settings = drain_settings(
        tmp_path, endpoint_url=s3_url, addressing_style="path", processes=0, pin=pin
    )
    out = io.StringIO()
    result = run_drain(settings, out=out, err=out, own_process=own_process)
    assert result.exit_code == 0, out.getvalue()
    assert made == ([frozenset({0, 1})] if pinned else [])
    assert bucket_keys(s3) == set()
