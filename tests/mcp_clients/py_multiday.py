#!/usr/bin/env python3
"""The concept's "Practical Example: Multi-Day Feature Development" with the official Python SDK
client (mcp 2.x): claude (driver) and gemini (navigator) build a payment gateway over three days,
the hub restarting between days on the same database, and cursor joins on day 3.

Driven by tests/api/mcp_multiday.rs, one process per day:
    python py_multiday.py --phase day1|day2|day3 <hub base URL> <state JSON>
The state starts as {"sessionId", "tokens": {"claude", "gemini"}} (from REST session/create);
each day prints it back with what the next day needs as {"ev":"state","state":{...}}.
Claude speaks the SDK's default "auto" mode (it settles on the stateless 2026-07-28), gemini and
cursor "legacy" (2025-11-25; an unbound client needs an MCP session to bind by session_join).
Prints one JSON line per check ({"ev": "ok"|"fail", ...}); exits 0 only if every check held.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import traceback
import warnings
from contextlib import asynccontextmanager
from typing import Any

import anyio

import mcp.types as types
from collab_client import Report, http_client, transport
from mcp import Client

parser = argparse.ArgumentParser()
parser.add_argument("--phase", choices=["day1", "day2", "day3"], required=True)
parser.add_argument("base")
parser.add_argument("state")
cli = parser.parse_args()
base = cli.base
state: dict[str, Any] = json.loads(cli.state)
warnings.filterwarnings("ignore")

SUMMARY = "Payment gateway using Stripe API"
SERVICE = "src/payment_service.ts"
TESTS = "tests/payment_service.test.ts"
MODES = {"claude": "auto", "gemini": "legacy", "cursor": "legacy"}

report = Report()
out, check = report.out, report.check


def has(items: Any, part: str) -> bool:
    return any(part in (x if isinstance(x, str) else json.dumps(x)) for x in (items or []))


def tokens_of(value: Any) -> int:
    """What the hub counts: compact JSON, UTF-8 bytes / 4 rounded up."""
    return math.ceil(len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()) / 4)


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content or [])


class Agent:
    """One SDK client acting as `who`: with its bearer token, or unbound (no token, loopback)."""

    def __init__(self, who: str, client: Client) -> None:
        self.who = who
        self.client = client

    async def raw(self, name: str, args: dict[str, Any]) -> types.CallToolResult:
        return await self.client.call_tool(name, args)

    async def call(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        r = await self.raw(name, args)
        label = f"{name} {args['action']}" if "action" in args else name
        check(not r.is_error, f"{self.who}: {label} succeeds", text_of(r) if r.is_error else None)
        return r.structured_content or {}

    async def tools(self) -> list[str]:
        return sorted(t.name for t in (await self.client.list_tools()).tools)

    async def create_task(self, **spec: Any) -> int | None:
        made = await self.call("task", {"action": "create", **spec})
        task = (made.get("tasks") or [{}])[0]
        check(task.get("description") == spec["description"], f"{self.who}: task {spec['description']!r} created", made)
        return task.get("id")

    async def complete_task(self, task_id: int | None, what: str) -> None:
        done = await self.call("task", {"action": "update", "taskId": task_id, "status": "completed"})
        check("completed" in json.dumps(done), f"{self.who}: {what!r} completed", done)


@asynccontextmanager
async def connect(who: str, token: str | None = None):
    async with http_client(token) as http:
        client = Client(transport(base, http), mode=MODES[who], cache=None, read_timeout_seconds=30,
                        client_info=types.Implementation(name=f"{who}-py-multiday", version="0.0.1"))
        async with client:
            expected = "2026-07-28" if MODES[who] == "auto" else "2025-11-25"
            check(client.protocol_version == expected, f"{who}: negotiated {expected} ({MODES[who]} mode)",
                  client.protocol_version)
            yield Agent(who, client)


async def day1() -> dict[str, Any]:
    """Claude implements the payment service, gemini writes the tests; end of day: paused.
    Claude works first and gemini after it, so claude's day 2 briefing has all of gemini's work
    as news (news is what came after one's own last event)."""
    async with connect("claude", state["tokens"]["claude"]) as claude, \
            connect("gemini", state["tokens"]["gemini"]) as gemini:
        cm = await claude.call("whoami", {})
        check(cm.get("aiId") == "claude" and cm.get("role") == "driver" and cm.get("sessionId") == state["sessionId"],
              "claude is the driver", cm)
        gm = await gemini.call("whoami", {})
        check(gm.get("aiId") == "gemini" and gm.get("role") == "navigator", "gemini is the navigator", gm)

        ctx = await claude.call("context_set", {"path": "summary", "value": SUMMARY})
        check(isinstance(ctx.get("eventId"), int), "claude: the summary is stored with its event", ctx)
        await claude.call("changes", {
            "action": "record", "filePath": SERVICE, "reason": "PaymentService on Stripe",
            "before": "export class PaymentService {}\n",
            "after": "export class PaymentService {\n  charge(amount: number) { return stripe.charges.create({ amount }); }\n}\n",
        })
        backend = await claude.create_task(description="Backend service", assignedTo="claude")
        await claude.complete_task(backend, "Backend service")

        # Loose handshake mode: the navigator records its own changes.
        await gemini.call("changes", {
            "action": "record", "filePath": TESTS, "reason": "unit tests for PaymentService", "before": "",
            "after": "test('charges', () => expect(new PaymentService().charge(100)).toBeDefined());\n",
        })
        unit = await gemini.create_task(description="Unit tests", assignedTo="gemini")
        await gemini.complete_task(unit, "Unit tests")
        await gemini.call("discovery_report", {"finding": "API rate limiting: Stripe allows 100 requests per second",
                                               "severity": "high", "location": SERVICE})
        msg = await gemini.call("message_send", {"to": "claude", "body": "Unit tests for PaymentService are in; "
                                                 "mind the Stripe rate limit before adding retries"})
        check(isinstance(msg.get("id"), int), "gemini: the message has an id", msg)
        paused = await gemini.call("session_status", {"action": "pause"})
        check(paused.get("status") == "paused", "end of day: the session is paused", paused.get("status"))
    return {"backendTaskId": backend, "unitTestsTaskId": unit, "geminiMessageId": msg.get("id")}


async def day2() -> dict[str, Any]:
    """After a restart: each resumes and hears what the other did; writes wait for resume."""
    focus = {"path": "activeWork.currentFocus", "value": "Error handling and webhooks"}
    async with connect("claude", state["tokens"]["claude"]) as claude:
        r = await claude.call("session", {"action": "resume", "strategy": "deep"})
        check(r.get("participant") == "claude" and r.get("role") == "driver", "claude: briefed as the driver",
              {"participant": r.get("participant"), "role": r.get("role")})
        check((r.get("context") or {}).get("summary") == SUMMARY, "claude: the shared context survived the restart",
              r.get("context"))
        b = r.get("briefing") or {}
        out("info", check="claude day 2 briefing", detail=b)
        check(b.get("strategy") == "deep", "claude: deep strategy as asked", b.get("strategy"))
        summary = b.get("summary", "")
        check("Payment Gateway Integration" in summary and SUMMARY in summary and "paused" in summary,
              "claude: the summary names the session, its context summary and that it is paused", summary)
        updates = b.get("collaboratorUpdates") or {}
        check(list(updates) == ["gemini"], "claude: news from gemini only, none of its own", updates)
        g = updates.get("gemini") or {}
        check(has(g.get("files"), TESTS), "claude: gemini's update lists the test file it changed", g)
        check(not has(g.get("files"), SERVICE), "claude: its own file is not in gemini's update", g.get("files"))
        check(g.get("lastAction") == "set the session paused", "claude: gemini's last action was the pause",
              g.get("lastAction"))
        check(has(b.get("newIssues"), "API rate limiting"), "claude: the rate limiting discovery is a new issue",
              b.get("newIssues"))
        m = next((x for x in b.get("messages") or [] if x.get("id") == state["geminiMessageId"]), {})
        check(m.get("from") == "gemini" and "rate limit" in m.get("text", ""), "claude: gemini's message is in the briefing",
              b.get("messages"))
        check(has(b.get("completed"), "Unit tests"), "claude: gemini's completed task is listed", b.get("completed"))
        check(not has(b.get("completed"), "Backend service"), "claude: its own completed task is not news",
              b.get("completed"))
        check(f"#{state['backendTaskId']}" in (b.get("yourLastActivity") or ""),
              "claude: its last activity was completing 'Backend service'", b.get("yourLastActivity"))
        check(has(b.get("changeAnalysis"), f"{TESTS}: 1 change(s) by gemini"),
              "claude: the change analysis names the test file and gemini", b.get("changeAnalysis"))
        size = b.get("size") or {}
        check(size.get("rawChanges") == 1 and size.get("rawMessages") == 1,
              "claude: the briefing stands for 1 change and 1 message", size)
        check(size.get("tokens") == tokens_of(b), "claude: size.tokens is the compact JSON bytes / 4",
              {"tokens": size.get("tokens"), "measured": tokens_of(b)})

        # The same briefing under a token budget it does not fit.
        budget = 200
        check(size.get("tokens", 0) > budget, f"the full briefing is over {budget} tokens (so the budget cuts)", size)
        small = await claude.call("session", {"action": "resume", "strategy": "deep", "maxTokens": budget})
        sb = small.get("briefing") or {}
        ssize = sb.get("size") or {}
        out("info", check=f"claude briefing under {budget} tokens", detail=small)
        check(ssize.get("tokens", 10**9) <= budget, f"maxTokens {budget}: briefing.size.tokens <= {budget}", ssize)
        check(ssize.get("tokens") == tokens_of(sb), f"maxTokens {budget}: size.tokens is what was sent",
              {"tokens": ssize.get("tokens"), "measured": tokens_of(sb)})
        check(len(ssize.get("omitted") or []) > 0, f"maxTokens {budget}: the cut parts are named", ssize)
        check(len(sb.get("alerts") or []) == len(b.get("alerts") or []), f"maxTokens {budget}: the alerts are kept",
              {"full": b.get("alerts"), "cut": sb.get("alerts")})
        check(ssize.get("rawTokens") == size.get("rawTokens"), f"maxTokens {budget}: the history it stands for is the same",
              ssize)
        if "context" in small:
            fits = ssize.get("tokens", 0) + tokens_of(small["context"]) <= budget
        else:
            fits = "context_get" in (small.get("contextOmitted") or "")
        check(fits, f"maxTokens {budget}: the context comes only if it fits, else contextOmitted says so",
              small.get("contextOmitted"))

        # Paused: writes are refused until the session is resumed.
        refused = await claude.raw("context_set", focus)
        error = (refused.structured_content or {}).get("error") or {}
        check(refused.is_error is True and error.get("code") == "session_paused",
              "a write while paused is refused with session_paused", refused.structured_content or text_of(refused))
        resumed = await claude.call("session_status", {"action": "resume"})
        check(resumed.get("status") == "active", "claude resumes the session", resumed.get("status"))
        ok = await claude.raw("context_set", focus)
        check(not ok.is_error, "the same write succeeds after resuming",
              text_of(ok) if ok.is_error else ok.structured_content)

        # Claude's day 2 work: news for gemini.
        await claude.call("changes", {
            "action": "record", "filePath": SERVICE, "reason": "error handling",
            "before": "export class PaymentService {\n  charge(amount: number) { return stripe.charges.create({ amount }); }\n}\n",
            "after": "export class PaymentService {\n  async charge(amount: number) {\n    try { return await stripe.charges"
                     ".create({ amount }); } catch (e) { throw new PaymentError(e); }\n  }\n}\n",
        })
        errors = await claude.create_task(description="Add error handling", assignedTo="claude")
        moved = await claude.call("task", {"action": "update", "taskId": errors, "status": "in_progress"})
        check("in_progress" in json.dumps(moved), "claude: 'Add error handling' in progress", moved)
        hooks = await claude.create_task(description="Implement webhooks", assignedTo="gemini")
        note = await claude.call("message_send", {"to": "gemini",
                                                  "body": "Error handling is underway; the webhooks task is yours"})

    # Gemini acted last on day 1 (the pause): its news is what claude did since.
    async with connect("gemini", state["tokens"]["gemini"]) as gemini:
        prompt = await gemini.client.get_prompt("resume")
        text = prompt.messages[0].content.text if prompt.messages else ""
        check(text.startswith("You are gemini (navigator)") and SERVICE in text and "Implement webhooks" in text,
              "gemini: the resume prompt briefs gemini on claude's work", text[:600])
        gr = await gemini.call("session", {"action": "resume"})
        gb = gr.get("briefing") or {}
        out("info", check="gemini day 2 briefing", detail=gb)
        check(gb.get("strategy") == "quick", "gemini: quick by default after a short absence", gb.get("strategy"))
        check(((gr.get("context") or {}).get("activeWork") or {}).get("currentFocus") == focus["value"],
              "gemini: the context has claude's new focus", (gr.get("context") or {}).get("activeWork"))
        updates = gb.get("collaboratorUpdates") or {}
        check(list(updates) == ["claude"], "gemini: news from claude only, none of its own", updates)
        c = updates.get("claude") or {}
        check(has(c.get("files"), SERVICE), "gemini: claude's update lists the service it changed", c)
        check(not has(c.get("files"), TESTS), "gemini: its own test file is not in claude's update", c.get("files"))
        check("set the session paused" in (gb.get("yourLastActivity") or ""), "gemini: its last activity was the pause",
              gb.get("yourLastActivity"))
        check(not has(gb.get("newIssues"), "rate limiting"), "gemini: its own discovery is not news", gb.get("newIssues"))
        check("Implement webhooks (gemini)" in ((gb.get("pendingTasks") or [""])[0]), "gemini: its own pending task first",
              gb.get("pendingTasks"))
        check(has(gb.get("inProgress"), "Add error handling (claude)"), "gemini: claude's task in progress",
              gb.get("inProgress"))
        check(any(x.get("id") == note.get("id") and x.get("from") == "claude" for x in gb.get("messages") or []),
              "gemini: claude's message is in the briefing", gb.get("messages"))
        check(any(s.get("rule") == "ready_task" and f"#{hooks}" in s.get("action", "") for s in gb.get("suggestions") or []),
              "gemini: suggested to start the webhooks task", gb.get("suggestions"))
        gsize = gb.get("size") or {}
        check(gsize.get("rawChanges") == 1 and gsize.get("rawMessages") == 1,
              "gemini: the briefing stands for 1 change and 1 message", gsize)
    return {"errorHandlingTaskId": errors, "webhooksTaskId": hooks}


async def day3() -> dict[str, Any]:
    """After another restart: cursor joins as an observer with skills and is onboarded."""
    async with connect("claude", state["tokens"]["claude"]) as claude:
        form = await claude.create_task(description="Create payment form component", skills=["react"])
        go = await claude.create_task(description="Port the worker to Go", skills=["go"])

        async with connect("cursor") as cursor:
            unbound = await cursor.tools()
            check(unbound == ["evolution", "session_create", "session_join", "session_list"],
                  "cursor: an unbound client sees only evolution/create/join/list", unbound)
            joined_raw = await cursor.raw("session_join", {"sessionId": state["sessionId"], "participant": "cursor",
                                                           "role": "observer", "skills": ["react"]})
            check(not joined_raw.is_error, "cursor: session_join succeeds", text_of(joined_raw) if joined_raw.is_error else None)
            check("chp_" not in joined_raw.model_dump_json(), "cursor: the tool result carries no token")
            joined = joined_raw.structured_content or {}
            p = joined.get("participant") or {}
            check(p.get("aiId") == "cursor" and p.get("role") == "observer", "cursor joined as an observer", p)
            o = joined.get("onboarding") or {}
            out("info", check="cursor onboarding", detail=o)
            pc = o.get("projectContext", "")
            check(SUMMARY in pc and "Payment Gateway Integration" in pc, "onboarding: the project context", pc)
            check(has(o.get("completedWork"), "Backend service") and has(o.get("completedWork"), "Unit tests"),
                  "onboarding: the completed work", o.get("completedWork"))
            check(has(o.get("codebaseChanges"), f"{SERVICE}: 2 change(s) by claude"),
                  "onboarding: the service, changed twice by claude", o.get("codebaseChanges"))
            check(has(o.get("codebaseChanges"), f"{TESTS}: 1 change(s) by gemini"),
                  "onboarding: the tests, changed by gemini", o.get("codebaseChanges"))
            check(has(o.get("currentFocus"), "Add error handling") and has(o.get("currentFocus"), "claude drives"),
                  "onboarding: the current focus", o.get("currentFocus"))
            s = o.get("suggestedTasks") or []
            check(len(s) == 1 and f"#{form}" in s[0]["action"] and "Create payment form component" in s[0]["action"],
                  "onboarding: the react task is suggested, nothing else", {"suggested": s, "form": form, "go": go})
            first = s[0] if s else {}
            check(first.get("action", "").startswith("ask for a role") and "react" in first.get("reason", "")
                  and first.get("rule") == "fits_your_skills",
                  "onboarding: an observer is told to ask for a role; the reason names the skill", first)

            me = await cursor.call("whoami", {})
            check(me.get("aiId") == "cursor" and me.get("role") == "observer", "cursor: whoami after joining", me)
            tools = await cursor.tools()
            check("task" in tools and "session" in tools and "context_set" not in tools and "session_status" not in tools,
                  "cursor: observer tools (no writes to the context, no session status)", tools)
            listed = await cursor.call("task", {"action": "list"})
            check(len(listed.get("tasks") or []) == 6, "cursor: lists every task",
                  [t.get("description") for t in listed.get("tasks") or []])
            take = await cursor.raw("task", {"action": "create", "description": "Payment form styles"})
            check(take.is_error is True, "cursor: an observer creates no tasks", text_of(take))

            r = await claude.call("session", {"action": "resume"})
            updates = (r.get("briefing") or {}).get("collaboratorUpdates") or {}
            check((updates.get("cursor") or {}).get("lastAction") == "joined", "claude: hears that cursor joined", updates)
    return {"formTaskId": form}


async def main() -> int:
    try:
        days = {"day1": day1, "day2": day2, "day3": day3}
        following = await days[cli.phase]()
        out("state", state={**state, **following})
    except Exception:  # noqa: BLE001 - every failure is reported as a check
        check(False, "exception", traceback.format_exc())
    return report.done()


if __name__ == "__main__":
    sys.exit(anyio.run(main))
