//! What the two load generators share (`collab-hub-bench` and `examples/ws_bench.rs`, which
//! includes this file by path): MCP over hand-written HTTP/1.1 on a blocking keep-alive
//! connection, so that the generator's own overhead stays small and known, and the CPU
//! counters read from /proc. Not a target of its own: cargo builds only `src/bin/*.rs` and
//! `src/bin/*/main.rs`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};

/// The MCP protocol version the generators speak.
pub const PROTOCOL: &str = "2025-11-25";

/// One HTTP/1.1 keep-alive connection.
pub struct Conn {
    pub addr: String,
    pub io: BufReader<TcpStream>,
}

pub struct Response {
    pub status: u16,
    pub session_id: Option<String>,
    pub body: Vec<u8>,
}

/// The status line and the headers this generator cares about.
pub struct Head {
    pub status: u16,
    pub length: Option<usize>,
    pub session_id: Option<String>,
    pub chunked: bool,
}

impl Conn {
    pub fn open(addr: &str) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        Ok(Conn {
            addr: addr.to_owned(),
            io: BufReader::new(stream),
        })
    }

    /// Writes one request (a body only when given one).
    pub fn write_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<(), String> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n", self.addr);
        if let Some(body) = body {
            req.push_str(&format!(
                "content-type: application/json\r\ncontent-length: {}\r\n",
                body.len()
            ));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut out = req.into_bytes();
        out.extend_from_slice(body.unwrap_or_default());
        self.io.get_mut().write_all(&out).map_err(|e| e.to_string())
    }

    /// Reads the status line and the headers up to the blank line.
    pub fn read_head(&mut self) -> Result<Head, String> {
        let io = |e: std::io::Error| e.to_string();
        let mut line = String::new();
        self.io.read_line(&mut line).map_err(io)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let mut head = Head {
            status,
            length: None,
            session_id: None,
            chunked: false,
        };
        loop {
            line.clear();
            if self.io.read_line(&mut line).map_err(io)? == 0 {
                return Err("connection closed in headers".into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                return Ok(head);
            }
            let Some((name, value)) = l.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => head.length = value.parse::<usize>().ok(),
                "mcp-session-id" => head.session_id = Some(value.to_owned()),
                "transfer-encoding" => head.chunked = value.eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
    }

    /// Reads one chunk of a chunked body into `out`; false for the last (empty) chunk.
    pub fn read_chunk(&mut self, out: &mut Vec<u8>) -> Result<bool, String> {
        let io = |e: std::io::Error| e.to_string();
        let mut line = String::new();
        if self.io.read_line(&mut line).map_err(io)? == 0 {
            return Err("connection closed in a chunked body".into());
        }
        let size_field = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_field, 16)
            .map_err(|_| format!("bad chunk size {line:?}"))?;
        let start = out.len();
        out.resize(start + size, 0);
        self.io.read_exact(&mut out[start..]).map_err(io)?;
        let mut crlf = [0; 2];
        self.io.read_exact(&mut crlf).map_err(io)?;
        Ok(size > 0)
    }

    /// Sends one POST and reads the whole answer: the status line, headers up to the blank
    /// line, then exactly Content-Length bytes of body, leaving the connection ready for reuse.
    pub fn post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, String> {
        self.request("POST", path, headers, Some(body))
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response, String> {
        self.write_request(method, path, headers, body)?;
        let head = self.read_head()?;
        let mut body = Vec::new();
        if head.chunked {
            // A streamed (SSE) answer: read chunks until the empty one.
            while self.read_chunk(&mut body)? {}
        } else {
            // Otherwise the hub answers with Content-Length.
            if head.length.is_none() && head.status != 202 && head.status != 204 {
                return Err(format!("{} answer without Content-Length", head.status));
            }
            body.resize(head.length.unwrap_or(0), 0);
            self.io.read_exact(&mut body).map_err(|e| e.to_string())?;
        }
        Ok(Response {
            status: head.status,
            session_id: head.session_id,
            body,
        })
    }
}

/// An initialized MCP session on its own connection.
pub struct Client {
    pub conn: Conn,
    token: String,
    session_id: String,
    pub next_id: u64,
}

impl Client {
    pub fn connect(addr: &str, token: String, name: &str) -> Result<Client, String> {
        let mut conn = Conn::open(addr)?;
        let auth = format!("Bearer {token}");
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL, "capabilities": {},
            "clientInfo": {"name": name, "version": "1"}}});
        let hs = [
            ("accept", "application/json, text/event-stream"),
            ("authorization", auth.as_str()),
        ];
        let r = conn.post("/mcp", &hs, init.to_string().as_bytes())?;
        let session_id = match (r.status, r.session_id) {
            (200, Some(id)) => id,
            (s, _) => {
                return Err(format!(
                    "initialize: {s} {}",
                    String::from_utf8_lossy(&r.body)
                ));
            }
        };
        let mut client = Client {
            conn,
            token,
            session_id,
            next_id: 1,
        };
        let r = client.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
        if r.status != 202 {
            return Err(format!("notifications/initialized: {}", r.status));
        }
        Ok(client)
    }

    pub fn send(&mut self, message: &Value) -> Result<Response, String> {
        let auth = format!("Bearer {}", self.token);
        let headers = [
            ("accept", "application/json, text/event-stream"),
            ("authorization", auth.as_str()),
            ("mcp-session-id", self.session_id.as_str()),
            ("mcp-protocol-version", PROTOCOL),
        ];
        self.conn
            .post("/mcp", &headers, message.to_string().as_bytes())
    }

    /// One JSON-RPC request; its result only for a 200 carrying a successful one.
    pub fn rpc(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let msg = json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params});
        let r = self.send(&msg).inspect_err(|_| {
            // The connection is in an unknown state: start a fresh one (same MCP session).
            if let Ok(c) = Conn::open(&self.conn.addr) {
                self.conn = c;
            }
        })?;
        let mut v = answer(&r.body)?;
        if r.status != 200 || v.get("error").is_some() || v["result"]["isError"] == true {
            return Err(format!(
                "{}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
        Ok(v["result"].take())
    }

    /// Opens this MCP session's GET event stream on a connection of its own and returns it
    /// with the response head read, and whether the body is chunked.
    pub fn open_stream(&self) -> Result<(Conn, bool), String> {
        let mut conn = Conn::open(&self.conn.addr)?;
        let auth = format!("Bearer {}", self.token);
        let headers = [
            ("accept", "text/event-stream"),
            ("authorization", auth.as_str()),
            ("mcp-session-id", self.session_id.as_str()),
            ("mcp-protocol-version", PROTOCOL),
        ];
        conn.write_request("GET", "/mcp", &headers, None)?;
        let head = conn.read_head()?;
        if head.status != 200 {
            return Err(format!("GET /mcp: {}", head.status));
        }
        Ok((conn, head.chunked))
    }

    /// Ends the MCP session (DELETE /mcp), which also ends its GET stream on the hub. On a
    /// connection of its own: the hub has likely closed this client's idle one by now.
    pub fn close(self) -> Result<(), String> {
        let auth = format!("Bearer {}", self.token);
        let headers = [
            ("authorization", auth.as_str()),
            ("mcp-session-id", self.session_id.as_str()),
            ("mcp-protocol-version", PROTOCOL),
        ];
        let r = Conn::open(&self.conn.addr)?.request("DELETE", "/mcp", &headers, None)?;
        match r.status {
            200 | 204 => Ok(()),
            s => Err(format!("DELETE /mcp: {s}")),
        }
    }
}

/// The JSON-RPC answer in a body: plain JSON, or the last `data:` line of an SSE stream.
pub fn answer(body: &[u8]) -> Result<Value, String> {
    let text = String::from_utf8_lossy(body);
    let json = if text.starts_with("event:") || text.starts_with("data:") || text.starts_with("id:")
    {
        text.lines()
            .rev()
            .find_map(|l| l.strip_prefix("data: "))
            .ok_or("SSE answer without data")?
            .to_owned()
    } else {
        text.into_owned()
    };
    serde_json::from_str(&json).map_err(|e| format!("bad JSON: {e}"))
}

/// Run time of every thread of `pid` so far, from /proc/PID/task/*/schedstat (0 if unavailable).
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Busy and total CPU ticks of the whole machine so far, from the first line of /proc/stat.
pub fn machine_ticks() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let idle = ticks.get(3).unwrap_or(&0.0) + ticks.get(4).unwrap_or(&0.0); // idle + iowait
    let total = ticks.iter().take(8).sum::<f64>(); // guest time is already in user
    (total - idle, total)
}

/// `HOST:PORT` of an `http://HOST:PORT` base URL.
pub fn host_port(url: &str) -> Result<String, String> {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    if addr.contains('/') || url.starts_with("https://") {
        return Err("--url must be http://HOST:PORT".into());
    }
    Ok(addr.to_owned())
}

/// The `p` quantile of sorted microseconds, in milliseconds (0 for none).
pub fn pct(sorted: &[u64], p: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        len => sorted[((len as f64 * p).ceil() as usize).clamp(1, len) - 1] as f64 / 1000.0,
    }
}
