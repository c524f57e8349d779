#!/usr/bin/env python3
"""Scripted session with the official Python SDK client (mcp 2.x) against a running hub.

Usage: python py_scenario.py <hub base URL> <collab session id> <claude's bearer token> <legacy|auto>
Prints one JSON line per check ({"ev": ...}); exits 0 only if every check held.
"auto" is the SDK's default: it probes the 2026-07-28 `server/discover` first and must end up
working against this hub either way.
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

base, session_id, token, mode = sys.argv[1:5]
warnings.filterwarnings("ignore")
events: list[dict[str, Any]] = []
requests: list[dict[str, Any]] = []


report = Report()
out, check = report.out, report.check


async def on_request(req: httpx2.Request) -> None:
    requests.append({"method": req.method, "version": req.headers.get("mcp-protocol-version"),
                     "session": req.headers.get("mcp-session-id")})


async def wait_for(pred, seconds: float = 5.0) -> bool:
    for _ in range(int(seconds / 0.025)):
        if pred():
            return True
        await anyio.sleep(0.025)
    return False


async def unbound_clients() -> None:
    """Clients without a token (loopback): list, join, and create through the tools."""
    for role in ("joiner", "creator"):
        async with http_client() as http:
            async with Client(transport(base, http), mode="legacy", cache=None, read_timeout_seconds=30) as anon:
                names = sorted(t.name for t in (await anon.list_tools()).tools)
                check(names == ["evolution", "session_create", "session_join", "session_list"], f"{role}: unbound tools", names)
                if role == "joiner":
                    listed = (await anon.call_tool("session_list", {})).structured_content
                    check(any(x["sessionId"] == session_id for x in listed["sessions"]), "session_list")
                    joined = await anon.call_tool("session_join", {"sessionId": session_id, "participant": "cursor"})
                    check(not joined.is_error and "chp_" not in str(joined.content), "session_join", joined.content[0].text[:120])
                    name = "cursor"
                else:
                    made = await anon.call_tool("session_create", {"name": "py side", "participants": [{"aiId": "codex"}]})
                    check(not made.is_error, "session_create", made.content[0].text[:120])
                    name = "codex"
                me = (await anon.call_tool("whoami", {})).structured_content
                check(me["aiId"] == name, f"{role}: bound as {name}", me)


async def main() -> int:
    async with http_client(token, on_request) as http:
        client = Client(transport(base, http), mode=mode,
                        client_info=types.Implementation(name=f"collab-hub-py-{mode}", version="0.0.1"),
                        extensions=[collab_events(lambda e: events.append(e))], read_timeout_seconds=30, cache=None)
        async with client:
            # auto: the hub answers server/discover, so the client stays in the stateless era.
            expected = "2026-07-28" if mode == "auto" else "2025-11-25"
            check(client.protocol_version == expected, f"negotiated {expected}", client.protocol_version)
            if mode == "auto":
                check(all(r["session"] is None for r in requests), "stateless: no Mcp-Session-Id", requests[:3])
            tools = sorted(t.name for t in (await client.list_tools()).tools)
            expected_tools = ["batch", "changes", "checkpoint", "context_append", "context_delete", "context_diff",
                              "context_get", "context_set", "context_sync", "discovery_report", "dispute", "events_ack",
                              "events_poll", "handshake", "lock", "memory", "message_ack", "message_send", "messages_read",
                              "notes", "role", "session", "session_leave", "session_status", "status_report", "suggestion",
                              "task", "whoami"]
            check(tools == expected_tools, "tools", tools)
            me = (await client.call_tool("whoami", {})).structured_content
            check(me["aiId"] == "claude" and me["sessionId"] == session_id, "whoami", me)
            page = (await client.call_tool("events_poll", {"after": 0})).structured_content
            check([e["kind"] for e in page["events"]] == ["session_created"], "events_poll", page)
            acked = (await client.call_tool("events_ack", {"upTo": page["lastEventId"]})).structured_content
            check(acked["ackedEventId"] == page["lastEventId"], "events_ack", acked)
            # The shared-context tools, each once.
            for name, args in [
                ("context_set", {"path": "activeWork.currentRefactoring.status", "value": "in_progress"}),
                ("context_get", {"path": "activeWork"}),
                ("context_append", {"path": "activeWork.recentDiscoveries", "value": {"finding": "leak"}}),
                ("context_sync", {"updates": {"projectUnderstanding": {"architecture": "Microservices"}}}),
                ("context_delete", {"path": "projectUnderstanding"}),
                ("context_diff", {"since": 0}),
                ("memory", {"action": "push", "kind": "file", "value": "/src/auth.ts"}),
                ("memory", {"action": "recent"}),
                ("notes", {"observations": ["coverage is low in payments"]}),
                ("notes", {}),
                ("discovery_report", {"finding": "slow query", "severity": "medium"}),
                ("message_send", {"to": "gemini", "body": "please review auth.ts", "requiresAck": True}),
                ("messages_read", {"limit": 5}),
                ("message_ack", {"upTo": 0}),
                ("checkpoint", {"action": "begin", "task": "refactor auth", "estimatedDuration": "30s",
                                "interruptible": True}),
                ("checkpoint", {"action": "end"}),
                ("status_report", {"kind": "lint", "status": "pass", "summary": "clean"}),
                ("changes", {"action": "record", "filePath": "/src/auth.py", "before": "a\n", "after": "b\n"}),
                ("changes", {"action": "list"}),
                ("handshake", {"step": "work_complete", "changes": ["auth"], "needsReview": False}),
                ("lock", {"action": "acquire", "resource": "/src/auth.py", "duration": "30s"}),
                ("lock", {"action": "list"}),
                ("suggestion", {"action": "list"}),
                ("task", {"action": "create", "description": "Refactor auth", "assignedTo": "claude"}),
                ("task", {"action": "list"}),
                ("role", {"action": "request", "role": "navigator"}),
            ]:
                r = await client.call_tool(name, args)
                check(not r.is_error, name, r.content[0].text[:160] if r.content else None)
            diff = (await client.call_tool("context_diff", {"since": 0})).structured_content
            # activeWork did not exist before: the whole new branch is one added entry.
            added = diff["added"].get("activeWork", {}).get("new", {})
            check(added.get("currentRefactoring", {}).get("status") == "in_progress", "context_diff content", diff)
            uri = f"collab://session/{session_id}"
            read = await client.read_resource(uri)
            check(json.loads(read.contents[0].text)["sessionId"] == session_id, "resources/read", uri)
            prompt = await client.get_prompt("resume")
            check("You are claude (driver)" in prompt.messages[0].content.text, "resume prompt")
            if mode == "legacy":
                paused = (await client.call_tool("session_status", {"action": "pause"})).structured_content
                check(paused["status"] == "paused", "session_status", paused["status"])
                arrived = await wait_for(lambda: any(e.get("kind") == "session_status_changed" for e in events))
                check(arrived, "pushed event on the GET stream", events)
                if arrived:
                    check(events[-1]["id"] == paused["lastEventId"], "event carries its log id", events[-1])
                await client.send_ping()
            else:
                # 2026-07-28 push: subscriptions/listen, then a change to the watched resource.
                async with client.listen(resource_subscriptions=[uri]) as sub:
                    check(list(sub.honored.resource_subscriptions or []) == [uri], "listen honoured the URI", sub.honored)
                    paused = (await client.call_tool("session_status", {"action": "pause"})).structured_content
                    check(paused["status"] == "paused", "session_status", paused["status"])
                    got = None
                    with anyio.move_on_after(5):
                        async for event in sub:
                            got = event
                            break
                    check(getattr(got, "uri", None) == uri, "resources/updated on the listen stream", repr(got))
            bad = await client.call_tool("session_status", {"action": "explode"})
            check(bad.is_error is True, "bad argument is a tool error", bad.content[0].text if bad.content else None)
            if mode == "legacy":
                await unbound_clients()
            left = (await client.call_tool("session_leave", {})).structured_content
            check(any(p["aiId"] == "claude" and p.get("leftAt") for p in left["participants"]), "session_leave", left)
    return report.done()


if __name__ == "__main__":
    sys.exit(anyio.run(main))
