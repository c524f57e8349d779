#!/usr/bin/env python3
"""A stock Python SDK `ClientSession` (mcp 2.x: no extension, no notification binding) sees the
events meant for its participant in the forms docs/mcp-notifications.md documents: log entries
(`logging_callback`) at the level it asked for, and `resources/updated` for its inbox resource
(`message_handler`), whose `resources/read` holds what waits. Then the SDK's stock `Client` in
its default "auto" mode (2026-07-28, stateless): `subscriptions/listen` on the inbox.

Usage: python py_notifications.py <hub base URL> <collab session id> <claude's token> <gemini's token>
Claude is the stock client; gemini sends it messages over REST.
Prints one JSON line per check ({"ev": ...}); exits 0 only if every check held.
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

import anyio
import httpx2

import mcp.types as types
from collab_client import Report, http_client, transport
from mcp import Client
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

base, session_id, claude_token, gemini_token = sys.argv[1:5]
warnings.filterwarnings("ignore")
inbox = f"collab://session/{session_id}/inbox"

logs: list[dict[str, Any]] = []  # logging_callback: params of notifications/message
handled: list[Any] = []  # message_handler: every notification the session surfaced
updated: list[str] = []  # URIs of resources/updated among them

report = Report()
out, check = report.out, report.check


async def on_log(params: types.LoggingMessageNotificationParams) -> None:
    logs.append({"level": params.level, "logger": params.logger, "data": params.data})


async def on_message(message: Any) -> None:
    handled.append(message)
    if isinstance(message, types.ResourceUpdatedNotification):
        updated.append(str(message.params.uri))


async def wait_for(pred, seconds: float = 5.0) -> bool:
    with anyio.move_on_after(seconds):
        while not pred():
            await anyio.sleep(0.025)
        return True
    return False


async def send(rest: httpx2.AsyncClient, token: str, to: str, priority: str, body: str) -> int:
    r = await rest.post(f"{base}/mcp/messages/send", json={"to": to, "priority": priority, "body": body},
                        headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def logs_of(event_id: int) -> list[dict[str, Any]]:
    return [entry for entry in logs if isinstance(entry["data"], dict) and entry["data"].get("id") == event_id]


async def main() -> int:
    async with http_client(claude_token) as http, httpx2.AsyncClient(timeout=10) as rest:
        async with streamable_http_client(f"{base}/mcp", http_client=http, terminate_on_close=True) as (read, write):
            async with ClientSession(read, write, logging_callback=on_log, message_handler=on_message,
                                     read_timeout_seconds=30) as session:
                init = await session.initialize()
                check(init.protocol_version == "2025-11-25", "stock session, handshake era", init.protocol_version)
                listed = [str(r.uri) for r in (await session.list_resources()).resources]
                check(inbox in listed, "the inbox is a listed resource", listed)
                # Nothing older is news: start from the newest event.
                me = (await session.call_tool("whoami", {})).structured_content
                await session.call_tool("events_ack", {"upTo": me["lastEventId"]})
                await session.subscribe_resource(inbox)
                await session.set_logging_level("warning")

                # A routine message: the inbox changes; below the level asked for, so no log entry.
                routine = await send(rest, gemini_token, "claude", "routine", "routine: rebased on main")
                check(await wait_for(lambda: inbox in updated), "resources/updated for the inbox (routine)", updated)
                # A critical one: a log entry at `alert`, compact, naming it.
                critical = await send(rest, gemini_token, "claude", "critical", "critical: stop, tests fail on main")
                check(await wait_for(lambda: logs_of(critical)), "log entry for the critical message", logs)
                entry = (logs_of(critical) or [{}])[0]
                data = entry.get("data") or {}
                check(entry.get("level") == "alert" and entry.get("logger") == "collab-hub", "critical → alert, logger collab-hub", entry)
                check(data.get("kind") == "message_sent" and data.get("from") == "gemini" and data.get("to") == "claude"
                      and data.get("priority") == "critical" and "tests fail" in str(data.get("gist")),
                      "log data: {id, kind, priority, from, to, gist}", data)
                check(len(json.dumps(data)) < 300, "log data is compact", len(json.dumps(data)))
                check(not logs_of(routine), "no log entry below the level asked for (routine at warning)", logs)
                check(any(isinstance(m, types.LoggingMessageNotification) for m in handled),
                      "message_handler sees the log entries too", [type(m).__name__ for m in handled])

                # Level info: routine events are logged too.
                await session.set_logging_level("info")
                later = await send(rest, gemini_token, "claude", "routine", "routine: lunch")
                check(await wait_for(lambda: logs_of(later)), "log entry for a routine message at info", logs)
                check([e["level"] for e in logs_of(later)] == ["info"], "routine → info", logs_of(later))

                # Its own actions are not news to it: no log entry, no inbox update.
                updated.clear()
                mine = (await session.call_tool("message_send", {"to": "gemini", "body": "on it"})).structured_content["id"]
                await anyio.sleep(0.5)
                check(not logs_of(mine) and inbox not in updated, "nothing for its own message", {"logs": logs_of(mine), "updated": updated})

                # The inbox holds what waits, with the events in full.
                doc = json.loads((await session.read_resource(inbox)).contents[0].text)
                ids = [e["id"] for e in doc["events"]]
                check(all(i in ids for i in (routine, critical, later)), "resources/read of the inbox lists the messages", ids)
                check(doc["ackedEventId"] == me["lastEventId"] and doc["sessionId"] == session_id, "inbox: cursor and session", doc)
                full = next((e for e in doc["events"] if e["id"] == critical), {})
                check(full.get("payload", {}).get("body") == "critical: stop, tests fail on main", "inbox events are whole", full)

                # Once acknowledged, nothing waits.
                await session.call_tool("events_ack", {"upTo": max(ids)})
                doc = json.loads((await session.read_resource(inbox)).contents[0].text)
                check(doc["events"] == [], "inbox empty after events_ack", doc["events"])

                # The hub's own notifications/collab/event never reaches a stock handler (the SDK
                # drops methods it does not know); what did reach it are standard notifications.
                kinds = sorted({type(m).__name__ for m in handled})
                check(all(k in ("LoggingMessageNotification", "ResourceUpdatedNotification", "ToolListChangedNotification") for k in kinds),
                      "message_handler got only standard notifications", kinds)

    await stateless_inbox()
    return report.done()


async def stateless_inbox() -> None:
    """2026-07-28 has no GET stream and no logging/setLevel: the inbox on a listen stream."""
    async with http_client(claude_token) as http, httpx2.AsyncClient(timeout=10) as rest:
        async with Client(transport(base, http), mode="auto", read_timeout_seconds=30, cache=None) as client:
            check(client.protocol_version == "2026-07-28", "auto: stateless era", client.protocol_version)
            async with client.listen(resource_subscriptions=[inbox]) as sub:
                check(list(sub.honored.resource_subscriptions or []) == [inbox], "listen honours the inbox", sub.honored)
                sent = await send(rest, gemini_token, "claude", "important", "important: review auth.ts")
                got = None
                with anyio.move_on_after(5):
                    async for event in sub:
                        got = event
                        break
                check(getattr(got, "uri", None) == inbox, "resources/updated for the inbox on the listen stream", repr(got))
                doc = json.loads((await client.read_resource(inbox)).contents[0].text)
                check(any(e["id"] == sent for e in doc["events"]), "the inbox holds it", [e["id"] for e in doc["events"]])


if __name__ == "__main__":
    sys.exit(anyio.run(main))
