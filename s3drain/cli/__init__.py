"""`s3drain` and `python -m s3drain`: arguments in, one exit code out."""

from s3drain.cli.startup import lean_imports

with lean_imports():
    from s3drain.cli.main import main

__all__ = ["main"]
