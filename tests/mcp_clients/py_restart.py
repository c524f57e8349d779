#!/usr/bin/env python3
"""The hub restarts in the middle of a Python SDK session (mcp 2.x, the session-based
2025-11-25 protocol): the client must carry on with the same MCP session, without
initializing again.

Usage: python py_restart.py <hub base URL> <collab session id> <claude's bearer token>
Prints {"ev":"restart"} when the hub may be restarted, then waits for a line on stdin.
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

import anyio
import httpx2

from collab_client import Report, collab_events, http_client, transport
from mcp import Client

base, session_id, token = sys.argv[1:4]
warnings.filterwarnings("ignore")
report = Report()
out, check = report.out, report.check


class Seen:
    """What one client sent: its initialize requests and the Mcp-Session-Ids it used."""

    def __init__(self) -> None:
        self.initializes = 0
        self.session_ids: set[str] = set()
        self.events: list[int] = []

    async def on_request(self, req: httpx2.Request) -> None:
        if req.method == "POST" and b'"initialize"' in req.content:
            self.initializes += 1
        if sid := req.headers.get("mcp-session-id"):
            self.session_ids.add(sid)


async def wait_for(pred, seconds: float = 5.0) -> bool:
    for _ in range(int(seconds / 0.025)):
        if pred():
            return True
        await anyio.sleep(0.025)
    return pred()


async def call(client: Client, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    r = await client.call_tool(tool, args or {})
    if r.is_error:
        raise RuntimeError(f"{tool}: {r.content[0].text if r.content else r}")
    return r.structured_content


async def main() -> int:
    claude_seen, cursor_seen = Seen(), Seen()
    async with http_client(token, claude_seen.on_request) as h1, http_client(None, cursor_seen.on_request) as h2:
        claude = Client(transport(base, h1), mode="legacy", cache=None, read_timeout_seconds=30,
                        extensions=[collab_events(lambda e: claude_seen.events.append(e["id"]))])
        cursor = Client(transport(base, h2), mode="legacy", cache=None, read_timeout_seconds=30)
        async with claude, cursor:
            await call(cursor, "session_join", {"sessionId": session_id, "participant": "cursor", "role": "observer"})
            check((await call(cursor, "whoami"))["aiId"] == "cursor", "cursor bound before the restart")
            before = await call(claude, "session_status", {"action": "pause"})
            check(await wait_for(lambda: before["lastEventId"] in claude_seen.events),
                  "claude streams events before the restart", claude_seen.events)
            ids = (set(claude_seen.session_ids), set(cursor_seen.session_ids))

            out("restart")
            await anyio.to_thread.run_sync(sys.stdin.readline)

            me = await call(claude, "whoami")
            check(me["aiId"] == "claude" and me["role"] == "driver", "claude is still claude after the restart", me)
            me = await call(cursor, "whoami")
            check(me["aiId"] == "cursor" and me["role"] == "observer", "cursor is still cursor after the restart", me)
            after = await call(claude, "session_status", {"action": "resume"})
            await call(claude, "message_send", {"to": "cursor", "body": "still here"})
            read = await call(cursor, "messages_read", {})
            check("still here" in json.dumps(read), "a message sent after the restart is read", read)
            check((claude_seen.session_ids, cursor_seen.session_ids) == ids and all(len(s) == 1 for s in ids),
                  "the MCP session ids did not change", [sorted(s) for s in ids])
            check(claude_seen.initializes == 1 and cursor_seen.initializes == 1, "neither client initialized again",
                  [claude_seen.initializes, cursor_seen.initializes])
            # The GET stream came back with Last-Event-ID: every event once, in order.
            got = await wait_for(lambda: after["lastEventId"] in claude_seen.events, 15)
            check(got, "claude streams events after the restart", {"events": claude_seen.events, "want": after["lastEventId"]})
            evs = [e for e in claude_seen.events if e <= after["lastEventId"]]
            check(evs == list(range(evs[0], evs[-1] + 1)) if evs else False,
                  "no event twice, skipped or out of order across the restart", claude_seen.events)
    return report.done()


if __name__ == "__main__":
    try:
        sys.exit(anyio.run(main))
    except Exception as e:  # noqa: BLE001 - reported as a failed check, with its text
        report.check(False, "no exception", repr(e))
        sys.exit(report.done())
