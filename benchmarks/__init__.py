"""`make bench`: s3drain against other ways of draining a prefix, side by side, on this machine.

See benchmarks/README.md. Nothing here is imported by s3drain or by its tests other than
tests/test_bench_smoke.py, which keeps the harness working.
"""
