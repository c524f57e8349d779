#!/usr/bin/env python3
"""The hub ends GET streams after a second (SSE polling); the Python SDK reconnects with
Last-Event-ID. Every event emitted meanwhile must arrive exactly once, in order.

Usage: python py_reconnect.py <hub base URL> <collab session id> <claude's bearer token>
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

import anyio
import httpx2

import mcp.types as types
from collab_client import Report, collab_events, http_client, transport
from mcp import Client

base, session_id, token = sys.argv[1:4]
warnings.filterwarnings("ignore")
received: list[int] = []
resumed_from: list[str] = []


report = Report()
out, check = report.out, report.check


async def on_request(req: httpx2.Request) -> None:
    if req.method == "GET" and req.headers.get("last-event-id"):
        resumed_from.append(req.headers["last-event-id"])


async def main() -> int:
    async with http_client(token, on_request) as http:
        client = Client(transport(base, http), mode="legacy", extensions=[collab_events(lambda e: received.append(e["id"]))], read_timeout_seconds=30, cache=None)
        async with client:
            last = 0
            # Changes keep coming for 3.5 s while the hub ends the stream every second.
            for i in range(14):
                action = "pause" if i % 2 == 0 else "resume"
                r = (await client.call_tool("session_status", {"action": action})).structured_content
                last = r["lastEventId"]
                await anyio.sleep(0.25)
            with anyio.move_on_after(5):
                while not received or received[-1] < last:
                    await anyio.sleep(0.05)
            check(len(resumed_from) >= 2, "the SDK reconnected with Last-Event-ID", resumed_from)
            check(received == list(range(received[0], last + 1)) if received else False,
                  "every event exactly once, in order", {"received": received, "last": last})
            check(received and received[0] <= 2, "from the first change on", received[:3])
    return report.done()


if __name__ == "__main__":
    sys.exit(anyio.run(main))
