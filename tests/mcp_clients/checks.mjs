// Shared by the multi-client SDK scripts: JSON-lines check reporting, waiting, and a tap that
// reads a copy of an MCP GET stream at the SSE level (so a script can tell which notifications
// came on the standalone stream, and with which SSE `id:`).
import * as z from 'zod/v4';

export const out = (ev, data = {}) => console.log(JSON.stringify({ ev, ...data }));

let anyFailed = false;
/** Reports one check; remembers a failure for `finish`. */
export const check = (cond, what, detail) => {
  out(cond ? 'ok' : 'fail', { check: what, detail });
  if (!cond) anyFailed = true;
  return cond;
};
export const fail = (what, detail) => check(false, what, detail);
/** Prints the final line and exits 0 only if every check held. */
export const finish = () => {
  out('done', { failed: anyFailed });
  process.exit(anyFailed ? 1 : 0);
};

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const waitFor = async (pred, ms = 5000) => {
  for (let t = 0; t < ms; t += 25) { if (pred()) return true; await sleep(25); }
  return pred();
};

export const EventNotification = z.object({
  method: z.literal('notifications/collab/event'),
  params: z.looseObject({ id: z.number(), kind: z.string() }),
});

/** Calls `onFrame({sseId, message})` for every JSON message on an SSE body (until it ends). */
export async function tapSse(body, onFrame) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value.replace(/\r\n?/g, '\n');
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let id = null;
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'id') id = val;
          else if (field === 'data') data.push(val);
        }
        if (data.length === 0) continue;
        let message;
        try { message = JSON.parse(data.join('\n')); } catch { continue; }
        onFrame({ sseId: id === null ? null : Number(id), message });
      }
    }
  } catch {
    // aborted when the client closes
  }
}
