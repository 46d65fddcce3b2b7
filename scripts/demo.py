"""`make demo`: a real drain against a local S3 (moto's server on 127.0.0.1), start to finish.

It fills a bucket the way a nightly export would (CSV batches in dated folders, one large file,
a few objects the ETL already processed, one key that tries to escape the download folder),
runs the real `s3drain` CLI against it twice, and shows where everything went; then the
round trip through `s3drain ingest`, and a watcher (`s3drain watch`) taking uploads as they land.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.server import MotoServer, s3_client  # noqa: E402

DEMO = ROOT / "demo-data"
BUCKET = "demo-lake"
PREFIX = "exports/2024/"
MiB = 1024 * 1024


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def run(args: list[str], env: dict[str, str]) -> int:
    shown = " ".join(a if " " not in a else repr(a) for a in args)
    print(f"$ s3drain {shown}", flush=True)
    return subprocess.call([sys.executable, "-m", "s3drain", *args], env=env, cwd=ROOT)


def fill(url: str) -> None:
    s3 = s3_client(url)
    s3.create_bucket(Bucket=BUCKET)
    for day in range(1, 4):
        for batch in range(40):
            rows = "".join(f"2024-05-0{day},{batch},{n},{n * 7 % 13}\n" for n in range(50))
            key = f"{PREFIX}2024-05-0{day}/batch-{batch:03d}.csv"
            s3.put_object(Bucket=BUCKET, Key=key, Body=("day,batch,row,value\n" + rows).encode())
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}full-dump.bin", Body=os.urandom(40 * MiB))
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}../outside.csv", Body=b"a hostile key\n")
    s3.put_object(Bucket=BUCKET, Key="exports/2023/old.csv", Body=b"not under the prefix\n")
    # The ETL already processed the first five batches of day 1 (copied them to processed/),
    # some time after they were uploaded: s3drain trusts such a copy (one that carries no
    # ETag it recorded) only when it was written after the object.
    time.sleep(1.1)
    processed = DEMO / "processed" / "2024-05-01"
    processed.mkdir(parents=True)
    for batch in range(5):
        key = f"{PREFIX}2024-05-01/batch-{batch:03d}.csv"
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        (processed / f"batch-{batch:03d}.csv").write_bytes(body)
    s3.close()


def show_result(url: str) -> None:
    banner("What is on disk")
    for folder in ("raw", "processed"):
        files = sorted(p for p in (DEMO / folder).rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in files)
        print(f"  {folder + '/':<11} {len(files):4d} files, {size / MiB:6.1f} MiB", end="")
        print(f"   e.g. {files[0].relative_to(DEMO)}" if files else "")
    banner("What is left in s3://demo-lake")
    s3 = s3_client(url)
    for obj in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        print(f"  {obj['Key']}")
    s3.close()
    banner("The audit log (.s3drain/audit.jsonl): two of its lines")
    lines = (DEMO / ".s3drain" / "audit.jsonl").read_text().splitlines()
    for line in (
        next(x for x in lines if '"downloaded"' in x),
        next(x for x in lines if '"refused"' in x),
    ):
        entry = json.loads(line)
        print(
            "  "
            + json.dumps(
                {
                    k: entry[k]
                    for k in (
                        "key",
                        "status",
                        "deleted",
                        "local_path",
                        "verified",
                        "delete_guard",
                        "detail",
                    )
                }
            )
        )
    print(f"  ... {len(lines)} lines in all; jq -c 'select(.deleted)' answers 'what went where?'")


def round_trip(env: dict[str, str]) -> None:
    banner("The other direction: ingest the sample CSVs into the Raw zone")
    ingest = [
        "ingest",
        "samples",
        "--bucket",
        BUCKET,
        "--layer",
        "Raw",
        "--origin",
        "Local",
        "--spec",
        "Movies",
        "--date",
        "2022-05-02",
    ]
    run(ingest, env)
    banner("Ingesting again: identical objects are skipped")
    run([*ingest, "-v"], env)
    banner("...and drained back: the round trip is byte-identical")
    back = DEMO / "roundtrip"
    run(
        [
            "--bucket",
            BUCKET,
            "--prefix",
            "Raw/Local/CSV/Movies/",
            "--local-base-path",
            str(back),
            "-q",
        ],
        env,
    )
    for sample in sorted((ROOT / "samples").glob("*.csv")):
        copy = back / "raw" / "2022" / "05" / "02" / sample.name
        same = copy.exists() and copy.read_bytes() == sample.read_bytes()
        print(f"  {sample.name}: {'identical' if same else 'DIFFERENT'} ({copy.relative_to(DEMO)})")


def watcher(url: str, env: dict[str, str]) -> None:
    banner("Drain on events: a watcher takes each object seconds after it lands")
    env = {**env, "AWS_ENDPOINT_URL_SQS": url}  # moto serves SQS on the same URL
    setup = ["events", "setup", "--bucket", BUCKET, "--prefix", "incoming/", "--json"]
    print(f"$ s3drain {' '.join(setup)}", flush=True)
    answer = subprocess.run(
        [sys.executable, "-m", "s3drain", *setup],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if answer.returncode != 0:
        print(answer.stderr)
        return
    queue_url = json.loads(answer.stdout)["queue_url"]
    for step in json.loads(answer.stdout)["steps"]:
        print(f"  {step['what']}: {step['action']}")
    base = DEMO / "watched"
    args = [
        "watch",
        "--bucket",
        BUCKET,
        "--prefix",
        "incoming/",
        "--local-base-path",
        str(base),
        "--queue-url",
        queue_url,
    ]
    print(f"$ s3drain {' '.join(args)} &", flush=True)
    watching = subprocess.Popen([sys.executable, "-m", "s3drain", *args], env=env, cwd=ROOT)
    s3 = s3_client(url)
    time.sleep(3)  # it checks the bucket, probes deletes and lists the prefix once first
    landed: dict[str, float] = {}

    def upload() -> None:
        for n in range(10):
            key = f"incoming/order-{n:03d}.csv"
            s3.put_object(Bucket=BUCKET, Key=key, Body=f"order,{n}\n".encode() * 100)
            landed[key] = time.monotonic()
            time.sleep(0.3)

    print("  uploading 10 files, one every 0.3 s, while it watches:", flush=True)
    uploader = threading.Thread(target=upload)
    uploader.start()
    waits: dict[str, float] = {}
    deadline = time.monotonic() + 60
    while (uploader.is_alive() or len(waits) < len(landed)) and time.monotonic() < deadline:
        for key, put_at in list(landed.items()):
            if key not in waits and (base / "raw" / key.split("/", 1)[1]).exists():
                waits[key] = time.monotonic() - put_at
        time.sleep(0.01)
    uploader.join()
    for key in landed:
        shown = f"{waits[key]:.2f} s after its upload" if key in waits else "not yet"
        print(f"  {key}: in {base.relative_to(DEMO)}/raw/ {shown}")
    time.sleep(1)  # deletes go out in batches, half a second after the first
    left = s3.list_objects_v2(Bucket=BUCKET, Prefix="incoming/").get("KeyCount", 0)
    print(f"  objects left under incoming/: {left}")
    print("  stopping the watcher (SIGTERM): it finishes what it holds and prints its summary")
    watching.send_signal(signal.SIGTERM)
    code = watching.wait(timeout=60)
    print(f"  (exit code {code}: 130 is how a watcher told to stop ends)")


def main() -> int:
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    banner("Starting a local S3 (moto, with SQS beside it) on 127.0.0.1")
    with MotoServer() as server:
        print(f"  {server.url}")
        banner("Filling s3://demo-lake: 120 CSV batches, a 40 MiB dump, one hostile key")
        fill(server.url)
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo-secret",
            "AWS_REGION": "us-east-1",
            "S3_ENDPOINT_URL": server.url,
            "S3_ADDRESSING_STYLE": "path",
        }
        common = ["--bucket", BUCKET, "--prefix", PREFIX, "--local-base-path", str(DEMO)]
        banner("A dry run first: what would happen (nothing changes)")
        run([*common, "--dry-run", "--max-objects", "5"], env)
        banner("The real drain")
        code = run(common, env)
        print(f"(exit code {code}: 1 means some objects were left in S3 on purpose, see above)")
        show_result(server.url)
        banner("Running it again: nothing left to do but the refused key")
        run([*common, "-q"], env)
        print("  (-q: quiet unless something needs attention)")
        banner("What happened to one key? The ledger (.s3drain/state.db) answers")
        run(["history", f"{PREFIX}2024-05-01/batch-000.csv", "--local-base-path", str(DEMO)], env)
        round_trip(env)
        watcher(server.url, env)
    banner("Done. Everything above is in ./demo-data; `make test` runs the test suite.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
