"""The fault-injection suite: drains real buckets on moto through a fault-injecting proxy, kills
runs, fills disks, overwrites objects mid-run, and checks the "nothing is lost" invariant after
every trial. `make test` runs it at CI size; `make chaos TRIALS=N` at a size you choose."""
