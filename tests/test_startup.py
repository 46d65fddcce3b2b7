"""cli/startup.py: the command line imports botocore without awscrt and collects no garbage
while importing; a program that imports s3drain as a library keeps botocore as it is. Each
case in a fresh interpreter (what is imported first is the point)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.server import s3_client
from tests.test_cli_e2e import PREFIX, cli_env, drain_args, fill, run_cli

ROOT = Path(__file__).resolve().parent.parent


def fresh(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_command_line_imports_botocore_without_awscrt_and_loads_it_when_needed() -> None:
    out = fresh(
        "import sys, gc\n"
        "import s3drain.cli\n"
        "import botocore.compat\n"
        "print(botocore.compat.HAS_CRT, 'awscrt' in sys.modules, gc.isenabled(),"
        " gc.get_freeze_count() > 0)\n"
        "from s3drain.checksums import Crc\n"
        "crc = Crc('crc32c'); crc.update(b'123456789')\n"  # the standard check value
        "print(crc.b64(), 'awscrt' in sys.modules)\n"
    )
    assert out.splitlines() == ["False False True True", "4waSgw== True"]


def test_a_library_user_keeps_botocore_as_it_is() -> None:
    out = fresh(
        "import s3drain.api, s3drain.drain.run\n"
        "import botocore.compat\n"
        "print(botocore.compat.HAS_CRT)\n"
    )
    assert out == "True"


def test_a_process_that_has_botocore_already_is_left_alone() -> None:
    out = fresh("import botocore.compat\nimport s3drain.cli\nprint(botocore.compat.HAS_CRT)\n")
    assert out == "True"


def test_botocores_own_signer_still_lets_gets_go_direct(s3_url: str) -> None:
    """Without awscrt botocore signs with its Python SigV4 signer, which leaves Host out of the
    request's headers: the direct GETs (checked against botocore's signature) must still be
    learned from it, or every GET would go through botocore at three times the CPU."""
    out = fresh(
        "import s3drain.cli\n"
        "from s3drain.config.s3 import S3Settings\n"
        "from s3drain.s3.client import make_client\n"
        "from s3drain.s3.direct_target import direct_target\n"
        f"s = S3Settings(endpoint_url={s3_url!r}, region='us-east-1', access_key_id='k',"
        " secret_access_key='s', addressing_style='path')\n"
        "t = direct_target(make_client(s), 'bucket', s)\n"
        "print(t.endpoint.host_header if t else None)\n"
    )
    assert out == s3_url.removeprefix("http://")


def test_the_cli_sends_its_small_gets_directly(tmp_path: Path, s3_url: str) -> None:
    s3 = s3_client(s3_url)
    fill(s3, {f"{PREFIX}a.csv": b"a", f"{PREFIX}b.csv": b"b"})
    run = run_cli(["drain", *drain_args(tmp_path / "base", "-vv")], cli_env(s3_url))
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (tmp_path / "base" / "raw").rglob("*.csv")) == ["a.csv", "b.csv"]
    assert "direct GETs in this process" in run.stderr, run.stderr
    assert "every GET goes through botocore" not in run.stderr


def test_the_model_cache_setting_is_the_environments(tmp_path: Path, s3_url: str) -> None:
    """On by default, in XDG_CACHE_HOME; S3DRAIN_MODEL_CACHE=off in the environment is a known
    name (not 'unknown setting') and writes nothing; in a settings file, where it would be read
    too late, it is refused with exit 2."""
    s3 = s3_client(s3_url)
    fill(s3, {f"{PREFIX}a.csv": b"a"})
    kept = tmp_path / "cache" / "s3drain" / "botocore-models"
    off = cli_env(s3_url, XDG_CACHE_HOME=str(tmp_path / "cache"), S3DRAIN_MODEL_CACHE="off")
    run = run_cli(["drain", *drain_args(tmp_path / "one")], off)
    assert run.returncode == 0, run.stderr
    assert not kept.exists()
    on = cli_env(s3_url, XDG_CACHE_HOME=str(tmp_path / "cache"))
    run = run_cli(["drain", *drain_args(tmp_path / "two")], on)
    assert run.returncode == 0, run.stderr
    assert list(kept.glob("*.pickle"))
    env_file = tmp_path / "settings.env"
    env_file.write_text("S3DRAIN_MODEL_CACHE=off\n")
    run = run_cli(["drain", *drain_args(tmp_path / "three", "--env-file", str(env_file))], on)
    assert run.returncode == 2, run.stderr
    assert "read from the environment only" in run.stderr
    assert "Traceback" not in run.stderr
