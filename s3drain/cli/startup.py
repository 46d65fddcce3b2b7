"""The command line's imports, made cheaper: about 60-100 ms of every start, which is 5 % of
a drain of 2,000 small objects and most of a run that finds nothing to do.

- **botocore without awscrt.** botocore imports awscrt (a 12 MB native library and its Python
  modules: 50-60 ms here) whenever it is installed, for features s3drain never asks of it:
  SigV4a signing for Multi-Region Access Point ARNs (a bucket name here cannot be an ARN) and
  CRT implementations of checksums s3drain computes itself (`checksums.py`, which loads awscrt
  on first use, only for an object whose checksum needs it). So while botocore is first
  imported, `awscrt` is hidden from it; afterwards it imports normally.
- **No garbage collection while importing.** Imports create objects and never garbage; the
  collector's passes over them (each over every object of the process) are pure cost. After
  the imports the objects made so far are frozen (`gc.freeze`): the run's own collections
  then never walk them again.

Only the command line does this: a program that imports s3drain as a library keeps its
botocore and its collector as they are.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def lean_imports() -> Iterator[None]:
    collecting = gc.isenabled()
    gc.disable()
    # Only where botocore is not loaded yet (a test process may have loaded it with awscrt).
    hide = "botocore" not in sys.modules and "awscrt" not in sys.modules
    if hide:
        sys.modules["awscrt"] = None  # type: ignore[assignment]  # "import awscrt" fails
    try:
        yield
    finally:
        if hide and sys.modules.get("awscrt", 0) is None:
            del sys.modules["awscrt"]
        if collecting:
            gc.freeze()
            gc.enable()
