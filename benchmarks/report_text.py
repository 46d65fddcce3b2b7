"""The fixed prose of RESULTS.md: what each column means, and what the on-disk table is."""

from __future__ import annotations

ON_DISK_INTRO = (
    "Not issue 19's targets, which are judged above on the plain figures: the same speed "
    "comparisons, each contender timed until its bytes were on disk (its run, then a sync "
    "timed after it exits). s3drain fsyncs every file before it deletes the object; rclone "
    "and s5cmd leave their files to the kernel, so their plain figure ends before the disk "
    "has the bytes."
)

COLUMN_NOTES = """\
- **objects/s, MiB/s**: objects (bytes) in the scenario divided by the contender's wall time,
  from process start to exit (start-up included: a scheduled drain pays it too).
- **on disk: rate (sync after)**: the same speed until the bytes are on disk: the wall time
  plus a `sync` timed right after the contender exits (each run starts with nothing left to
  write: a `sync` after the fill). s3drain fsyncs every file before deleting its object, so
  its sync finds next to nothing; rclone, s5cmd, aws and naive leave their files to the
  kernel, and the sync is what reaching the disk still costs. It is the figure of the same
  promise for all; the targets below are judged, as issue 19 sets them, on the plain one.
- **% of ceiling**: the contender's speed as a share of the server ceiling row of the same
  scenario on the same server.
- **server ceiling**: many parallel plain GETs of the same objects after the same fill, bytes
  discarded, nothing written or deleted (presigned URLs, one kept connection per thread); the
  fastest of several probes: thread counts, equal ranges per object where there are fewer
  objects than threads, and 8 MiB ranges for big objects. The notes give every probe's rate.
- **S3 requests/object**: every request the server received during the run divided by the
  object count, total and by type. On moto the type is the S3 operation (from its request
  log); on SeaweedFS it is SeaweedFS's own class from its metrics: GET (GetObject, HeadObject
  and every bucket GET such as GetBucketVersioning), LIST (every listing), DELETE (DeleteObject
  and DeleteObjects alike, one per request), PUT.
- **peak RSS MiB: 1 process / all**: the largest peak of any one process of the contender's
  tree (``VmHWM``, and ``wait4``), then the largest sum of the tree's proportional set sizes
  at one moment (``Pss``, sampled every 50 ms), with the process count when more than one.
  Started by a bare-interpreter launcher so that the runner's own memory is not counted in.
- **CPU s/1,000 obj**: user + system CPU seconds of the contender (its whole tree, ``wait4``)
  per 1,000 objects, that is ms per object.
- **CPU s/GiB**: the same CPU seconds per GiB drained, for the scenarios of big objects;
  start-up included; the server's CPU and the link relay's are not in it.
- **server CPU ms/request (/object)**: CPU the server process spent during the run (``utime +
  stime`` from /proc before and after), per request it counted and per object. It says
  whether the server could have been the limit; the notes give its share of one core.
- **(cores N)**: the scaling scenario's contender pinned to those cores; the server is on
  core 0 there.
- **(median of N)**: N runs of that contender, taken in rounds (one run of each contender per
  round); wall time, CPU and the relay's and the server's CPU are each the median, requests
  are the median run's, peak RSS the largest of the N.
- **link relay**: in the wan and cloud scenarios, the CPU the relay process spent during the
  run (its share of one core over the run's wall time).
- **result**: `ok` only when the exit code was 0, every object is on disk with the right bytes
  (MD5), nothing else is there, and the prefix is empty. Anything else is `wrong`/`failed`/
  `timeout` and its speed is not reported.
- **watch** (the `s3drain watch` scenario, benchmarks/README.md): `s3drain watch (trickle)`
  is one watcher running while the bench uploads at a steady rate (no speed: the uploads set
  it; its S3 requests leave out the bench's PUTs); `s3drain watch --once` drains a burst of
  queued events; `s3drain` drains the same objects by listing them. **upload to file**: from
  the end of each PUT to its file in place under raw/ (seen within 20 ms). **the watcher's own
  p50 / p95**: its summary's figure, from the event's time to the object settled (deleted from
  S3 too). **its last file at**: seconds from the watcher's start to the newest file's mtime.
  **SQS requests/object**: the watcher's own SQS requests (not the bench's), counted at the
  SQS server. After `--once` the queue must be empty for `ok` (and after the trickle every
  upload must have reached its file); what the trickle's SIGTERM left in the queue is shown."""
