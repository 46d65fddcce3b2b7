"""What the run and its fetch processes say to each other, over one SOCK_SEQPACKET socketpair:
one message per packet, as a marshalled tuple of plain values (a tenth of pickle's CPU for
the dataclasses; both ends are the same interpreter). A fetched temp file's descriptor rides
along with its answer (SCM_RIGHTS).

  run -> fetch process   ("setup", Endpoint fields..., threads), ("job", ...), ("stop",),
                         ("close",)
  fetch process -> run   ("ready",), ("done", ...) with one descriptor, ("failed", ...),
                         ("fatal", traceback)
"""

from __future__ import annotations

import marshal
import os
import socket
from dataclasses import astuple, dataclass
from datetime import UTC, datetime

from s3drain.drain.direct_fetch import Done, Failed, Job
from s3drain.drain.verify import Verified
from s3drain.records import FileId, ObjectRecord
from s3drain.s3.direct import Endpoint
from s3drain.s3.sigv4 import Credentials

MESSAGE_LIMIT = 1 << 16  # a job or an answer is a few hundred bytes
STOP = ("stop",)  # finish nothing more: jobs in flight end as interrupted
CLOSE = ("close",)  # no more jobs: finish those taken, then exit
READY = ("ready",)
_UNLISTED = datetime(1970, 1, 1, tzinfo=UTC)  # a fetch never needs the listing's date


@dataclass(frozen=True)
class Setup:
    endpoint: Endpoint
    threads: int


Message = tuple[object, ...]


def send(sock: socket.socket, message: Message, fd: int | None = None) -> None:
    data = marshal.dumps(message)  # type: ignore[arg-type]  # plain values only, by construction
    if fd is None:
        sock.sendmsg([data])
    else:
        socket.send_fds(sock, [data], [fd])


def receive(sock: socket.socket) -> tuple[Message, list[int]] | None:
    """One message and the descriptors it carries; None when the other end has gone."""
    data, fds, _flags, _address = socket.recv_fds(sock, MESSAGE_LIMIT, 4)
    if not data:
        for fd in fds:
            os.close(fd)
        return None
    # Both ends are this program, over a socketpair no other process holds.
    message = marshal.loads(data)  # noqa: S302
    if not isinstance(message, tuple) or not message:
        raise ValueError(f"not a message: {message!r:.80}")
    return message, fds


def setup_message(setup: Setup) -> Message:
    return ("setup", *astuple(setup.endpoint), setup.threads)


def read_setup(message: Message) -> Setup:
    if message[0] != "setup" or len(message) != 12:
        raise ValueError(f"expected the setup, got {message[0]!r}")
    m = message
    endpoint = Endpoint(
        _str(m[1]),
        _str(m[2]),
        _int(m[3]),
        _str(m[4]),
        _str(m[5]),
        _str(m[6]),
        _opt(m[7]),
        bool(m[8]),
        _float(m[9]),
        _float(m[10]),
    )
    return Setup(endpoint, _int(m[11]))


def job_message(job: Job) -> Message:
    r, c = job.record, job.credentials
    # Field by field: astuple deep-copies, a cost paid twice per object on this path.
    return (
        "job",
        job.id,
        r.key,
        r.size,
        r.etag,
        r.version_id,
        job.temp,
        c.access_key,
        c.secret_key,
        c.token,
    )


def read_job(m: Message) -> Job:
    record = ObjectRecord(_str(m[2]), _int(m[3]), _str(m[4]), _UNLISTED, _opt(m[5]))
    credentials = Credentials(_str(m[7]), _str(m[8]), _opt(m[9]))
    return Job(_int(m[1]), record, _str(m[6]), credentials)


def result_message(result: Done | Failed) -> Message:
    if isinstance(result, Failed):
        r = result
        return (
            "failed",
            r.id,
            r.kind,
            r.message,
            r.requests,
            r.status,
            r.code,
            r.errno,
            r.filename,
        )
    v, f = result.verified, result.file
    modified = v.last_modified.isoformat() if v.last_modified is not None else None
    return (
        "done",
        result.id,
        v.label,
        v.checksums,
        v.version_id,
        f.device,
        f.inode,
        f.size,
        f.mtime_ns,
        result.requests,
        modified,
    )


def read_result(m: Message) -> Done | Failed | None:
    """An answer to a job; None for anything else."""
    if m[0] == "done":
        modified = _opt(m[10])
        verified = Verified(
            _str(m[2]),
            _opt(m[3]),
            _opt(m[4]),
            datetime.fromisoformat(modified) if modified is not None else None,
        )
        file = FileId(_int(m[5]), _int(m[6]), _int(m[7]), _int(m[8]))
        return Done(_int(m[1]), verified, file, _int(m[9]))
    if m[0] == "failed":
        return Failed(
            _int(m[1]),
            _str(m[2]),
            _str(m[3]),
            _int(m[4]),
            _int(m[5]),
            _str(m[6]),
            _int(m[7]),
            _opt(m[8]),
        )
    return None


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {value!r:.40}")
    return value


def _opt(value: object) -> str | None:
    return None if value is None else _str(value)


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"expected a number, got {value!r:.40}")
    return value


def _float(value: object) -> float:
    if not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r:.40}")
    return float(value)
