#!/usr/bin/env node
// The hub restarts in the middle of a TypeScript SDK session: the client must carry on with
// the same MCP session, without initializing again.
// Usage: node ts_restart.mjs <hub base URL> <collab session id> <claude's bearer token>
// Prints {"ev":"restart"} when the hub may be restarted, then waits for a line on stdin.
import { createInterface } from 'node:readline';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { EventNotification, check, finish, out, waitFor } from './checks.mjs';

const [base, sessionId, token] = process.argv.slice(2);
const mcpUrl = new URL('/mcp', base);
const stdin = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => stdin.once('line', resolve));

// A client whose initialize requests are counted, recording the events pushed to it.
async function connect(name, auth) {
  const events = [];
  let initializes = 0;
  const fetchCounting = async (url, init) => {
    if (init?.method === 'POST' && typeof init.body === 'string' && init.body.includes('"initialize"')) initializes += 1;
    return fetch(url, init);
  };
  const transport = new StreamableHTTPClientTransport(mcpUrl, {
    requestInit: { headers: auth ? { Authorization: `Bearer ${auth}` } : {} },
    fetch: fetchCounting,
    // A restart takes the stream down for a few seconds; the SDK's default gives up after two
    // tries, which a deployment should raise (README: restarts).
    reconnectionOptions: { initialReconnectionDelay: 200, maxReconnectionDelay: 1000, reconnectionDelayGrowFactor: 1.5, maxRetries: 60 },
  });
  const client = new Client({ name, version: '0.0.1' }, { capabilities: {} });
  client.setNotificationHandler(EventNotification, (n) => events.push(n.params.id));
  await client.connect(transport);
  const call = async (tool, args = {}) => {
    const r = await client.callTool({ name: tool, arguments: args });
    if (r.isError) throw new Error(`${tool}: ${r.content.map((c) => c.text).join(' ')}`);
    return r.structuredContent;
  };
  return { client, transport, events, call, initializes: () => initializes };
}

const inOrderOnce = (ids) => ids.every((id, i) => i === 0 || id > ids[i - 1]);

try {
  // Claude with its bearer token; Cursor joins through the tool (its binding made by the hub).
  const claude = await connect('claude-ts', token);
  const cursor = await connect('cursor-ts');
  await cursor.call('session_join', { sessionId, participant: 'cursor', role: 'observer' });
  check((await cursor.call('whoami')).aiId === 'cursor', 'cursor bound before the restart');
  const before = await claude.call('session_status', { action: 'pause' });
  check(await waitFor(() => claude.events.includes(before.lastEventId)), 'claude streams events before the restart', claude.events);
  const ids = { claude: claude.transport.sessionId, cursor: cursor.transport.sessionId };

  out('restart');
  await nextLine();

  // Same MCP sessions, same identities, no second initialize.
  const meClaude = await claude.call('whoami');
  check(meClaude.aiId === 'claude' && meClaude.role === 'driver', 'claude is still claude after the restart', meClaude);
  const meCursor = await cursor.call('whoami');
  check(meCursor.aiId === 'cursor' && meCursor.role === 'observer', 'cursor is still cursor after the restart', meCursor);
  const after = await claude.call('session_status', { action: 'resume' });
  const sent = await claude.call('message_send', { to: 'cursor', body: 'still here' });
  const read = await cursor.call('messages_read', {});
  check(JSON.stringify(read).includes('still here'), 'a message sent after the restart is read', read);
  check(claude.transport.sessionId === ids.claude && cursor.transport.sessionId === ids.cursor, 'the MCP session ids did not change', ids);
  check(claude.initializes() === 1 && cursor.initializes() === 1, 'neither client initialized again', { claude: claude.initializes(), cursor: cursor.initializes() });
  // The GET stream came back (Last-Event-ID): every event once, in order, through the restart.
  check(await waitFor(() => claude.events.includes(after.lastEventId), 15000), 'claude streams events after the restart', { events: claude.events, want: after.lastEventId, sent });
  check(inOrderOnce(claude.events), 'no event twice or out of order across the restart', claude.events);
  const upTo = claude.events.filter((id) => id <= after.lastEventId);
  check(upTo.every((id, i) => i === 0 || id === upTo[i - 1] + 1), 'no event skipped across the restart', upTo);
  await claude.client.close();
  await cursor.client.close();
} catch (e) {
  check(false, 'no exception', String(e?.stack ?? e));
}
finish();
