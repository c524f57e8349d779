// DOM helpers. Every piece of data reaches the page as text (textContent, attribute values);
// nothing here parses HTML.

const PROPS = new Set(["value", "checked", "disabled", "selected", "hidden", "open", "multiple", "required"]);

/** h("button", {class: "x", onclick: f}, "text", child…) */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value == null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (PROPS.has(key)) el[key] = value;
    else if (key === "style") throw new Error("no inline styles (CSP): use a class");
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/**
 * Replaces the children of `container`, keeping keyboard focus: an element with
 * `data-key` that had focus gets it back in the new content (live updates must not throw a
 * keyboard user out of the list they are working in).
 */
export function fill(container, ...children) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.key : undefined;
  const selection = key && "selectionStart" in active ? [active.selectionStart, active.selectionEnd] : null;
  const value = key && "value" in active && active.tagName !== "BUTTON" ? active.value : undefined;
  container.replaceChildren();
  append(container, children);
  if (key) {
    const again = container.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again) {
      if (value !== undefined && again.value !== value && again.tagName !== "SELECT") again.value = value;
      again.focus({ preventScroll: true });
      if (selection && "setSelectionRange" in again) {
        try { again.setSelectionRange(...selection); } catch { /* not a text field */ }
      }
    }
  }
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

/** "12 s ago", "3 min ago", "in 4 min": short and calm. */
export function relative(iso, now = Date.now()) {
  if (!iso) return "";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "";
  const secs = Math.round((now - t) / 1000);
  const abs = Math.abs(secs);
  let text;
  if (abs < 5) return "just now";
  if (abs < 60) text = `${abs} s`;
  else if (abs < 3600) text = `${Math.round(abs / 60)} min`;
  else if (abs < 86400) text = `${Math.round(abs / 3600)} h`;
  else text = `${Math.round(abs / 86400)} d`;
  return secs >= 0 ? `${text} ago` : `in ${text}`;
}

/** mm:ss (or h:mm:ss) until `iso`; "expired" once past. */
export function countdown(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "";
  let secs = Math.floor((t - now) / 1000);
  if (secs <= 0) return "expired";
  const h = Math.floor(secs / 3600);
  secs -= h * 3600;
  const m = Math.floor(secs / 60);
  const s = secs - m * 60;
  const pad = (n) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

/** A <time> that the page's ticker keeps current (relative), with the exact time as a tooltip. */
export function timeAgo(iso) {
  return h("time", { datetime: iso || "", title: iso ? new Date(iso).toLocaleString() : "", dataset: { relative: "" } }, relative(iso));
}

/** Local clock time of an ISO timestamp (HH:MM:SS). */
export function clock(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** Text of any JSON value for display. */
export function plain(value) {
  if (value == null) return "";
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}

/** Saves `text` as a file (an object URL; nothing leaves the browser). */
export function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h("a", { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
