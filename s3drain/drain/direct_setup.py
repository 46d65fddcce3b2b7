"""Whether this run sends its GETs directly, and the parts that do: the fetch pool for objects
below --multipart-threshold (fetch processes, or this process's threads on one core), the
streams of larger ones, the listing's ListObjectsV2 and the deleter's DeleteObjects. Only where
botocore's own GetObject for this bucket is reproduced exactly (`s3/direct_target.py`), and
DeleteObjects only where botocore's own is too (`s3/delete_form.py`); otherwise every request
stays with botocore.
"""

from __future__ import annotations

from dataclasses import dataclass

from s3drain.drain.context import RunState
from s3drain.drain.core_pin import CorePin
from s3drain.drain.direct_deletes import DirectDeletes
from s3drain.drain.direct_listing import DirectListing
from s3drain.drain.direct_streams import DirectStreams
from s3drain.drain.direct_switch import DirectSwitch
from s3drain.drain.fetch_pool import FetchPool, InlinePool
from s3drain.drain.process_pool import ProcessPool
from s3drain.drain.reporter import Reporter
from s3drain.drain.settings import DrainSettings, fetch_processes, usable_core_set
from s3drain.s3.client import RequestCounter, S3Client
from s3drain.s3.delete_form import DeleteForm, delete_form
from s3drain.s3.direct import Connection
from s3drain.s3.direct_target import direct_target
from s3drain.units import format_size


@dataclass(frozen=True)
class Direct:
    pool: FetchPool
    streams: DirectStreams
    switch: DirectSwitch
    listing: DirectListing
    deletes: DirectDeletes
    pin: CorePin | None = None

    def close(self) -> None:
        if self.pin is not None:
            self.pin.close()
        self.pool.close()
        self.streams.close()
        self.listing.close()
        self.deletes.close()


def set_up_direct(
    settings: DrainSettings,
    client: S3Client,
    counter: RequestCounter,
    state: RunState,
    reporter: Reporter,
    *,
    own_process: bool = False,
) -> Direct | None:
    """`own_process`: the process is s3drain's alone (the command line), so the run may set
    where its threads run (`core_pin.py`)."""
    target = direct_target(client, settings.bucket, settings.s3)
    if target is None:
        reporter.debug("direct GETs: not for this endpoint; every GET goes through botocore")
        return None

    def count(requests: int) -> None:
        counter.add("GetObject", requests)

    switch = DirectSwitch(reporter.warn)
    streams = DirectStreams(
        target.endpoint,
        credentials=target.credentials,
        client=client,
        switch=switch,
        count=count,
        endpoint_url=target.url,
    )
    listing = DirectListing(
        target.endpoint,
        settings.bucket,
        credentials=target.credentials,
        client=client,
        switch=switch,
        count=counter.add,
        endpoint_url=target.url,
    )

    def form() -> DeleteForm | None:
        learned = delete_form(
            client, settings.bucket, Connection(target.endpoint), target.credentials()
        )
        if learned is None:
            reporter.debug("direct DeleteObjects: not for this endpoint; botocore sends them")
        return learned

    deletes = DirectDeletes(
        target.endpoint,
        settings.bucket,
        form,
        credentials=target.credentials,
        client=client,
        switch=switch,
        count=counter.add,
        endpoint_url=target.url,
    )
    processes = fetch_processes(settings)
    size = format_size(settings.multipart_threshold)
    where = f"{processes} fetch processes" if processes else "this process"
    reporter.debug(f"objects below {size}: direct GETs in {where}; larger ones: direct streams")
    pool: FetchPool
    pin = None
    if processes == 0:
        cores = usable_core_set()
        if settings.pin and own_process and len(cores) > 1:
            pin = CorePin(cores, debug=reporter.debug, crashed=state.crashed)
        pool = InlinePool(
            target.endpoint,
            credentials=target.credentials,
            count=count,
            stop=state.stop,
            endpoint_url=target.url,
        )
    else:
        pool = ProcessPool(
            target.endpoint,
            processes=processes,
            threads=-(-settings.workers // processes),
            credentials=target.credentials,
            count=count,
            stop=state.stop,
            endpoint_url=target.url,
            warn=reporter.warn,
        )
    return Direct(pool, streams, switch, listing, deletes, pin)
