"""`python -m s3drain`: the same entry point as the `s3drain` console script."""

import sys

from s3drain.cli.main import run_program

sys.exit(run_program())
