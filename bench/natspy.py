"""
What nats-py itself can do with the bench's nats-server: the baseline that
C{python -m bench --cluster} sets streamd's JetStream burst beside.

A child process publishes C{count} messages into a JetStream stream of its
own, the way C{nats bench js pub} does, with the most direct calls nats-py
has: C{js.publish_async} in a loop, then waiting for every acknowledgement;
and, for reference, plain C{nc.publish} with no acknowledgement, timed until
the stream holds them all.
"""

from __future__ import annotations

import asyncio
import time

from bench.children import Report

STREAM_POLL_SECONDS = 0.005


def natsPyPublisher(report: Report, port: int, count: int, size: int, acknowledged: bool) -> float:
    """
    Publish C{count} C{size}-byte messages into a new JetStream stream on
    the nats-server on C{port}, acknowledged or not.

    @return: messages a second.
    """
    return asyncio.run(_publish(report, port, count, size, acknowledged))


async def _publish(report: Report, port: int, count: int, size: int, acknowledged: bool) -> float:
    import nats
    from nats.js.api import StorageType, StreamConfig

    nc = await nats.connect(f"nats://127.0.0.1:{port}")
    try:
        js = nc.jetstream()
        name = f"baseline{time.monotonic_ns()}"
        await js.add_stream(StreamConfig(name=name, subjects=[name], storage=StorageType.FILE))
        payload = bytes(size)
        report("ready", None)
        start = time.perf_counter()
        if acknowledged:
            for _ in range(count):
                await js.publish_async(name, payload)
            await js.publish_async_completed()
        else:
            for _ in range(count):
                await nc.publish(name, payload)
            await nc.flush()
            while (await js.stream_info(name)).state.messages < count:
                await asyncio.sleep(STREAM_POLL_SECONDS)
        elapsed = time.perf_counter() - start
        await js.delete_stream(name)
        return count / elapsed
    finally:
        await nc.close()
