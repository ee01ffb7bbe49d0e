//! Test harness: runs the real `kefu` binary on free loopback ports and drives it
//! with SIPp and raw SIP/RTP over UDP.
#![allow(dead_code)]

pub mod desk;
pub mod kamailio;
pub mod pg;
pub mod phone;
pub mod sipp_trace;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A customer's WebSocket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A free UDP port on loopback (also free for TCP at the time of asking).
/// A JSON array of strings (a call record's `path`, `prompts`, ...).
pub fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// A keys-only copy of the English demo plan, for tests that measure RTP timing:
/// its server loads no speech models, so nothing competes with the measurement.
pub fn dtmf_plans() -> PathBuf {
    repo().join("tests/fixtures/dtmf")
}

/// Ports come from 10000–19999, below the kernel's ephemeral range: a port picked
/// there could be taken by some test's outgoing connection before kefu binds it.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `n` consecutive loopback ports that are free now (UDP and TCP): SIPp's
/// `-mp` takes the port given and the ones after it (RTCP, video).
pub fn free_ports(count: u16) -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
        ^ (u64::from(std::process::id()) << 20);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 10_000 + ((seed.wrapping_add(n.wrapping_mul(7919))) % 10_000) as u16;
        if port.checked_add(count).is_some_and(|end| end <= 20_000)
            && (port..port + count).all(|p| {
                UdpSocket::bind(("127.0.0.1", p)).is_ok()
                    && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
            })
        {
            return port;
        }
    }
}

/// Waits (at most 10 s) until something has bound UDP `port`: a program started
/// in the background is listening. Read from /proc/net/udp, so the check never
/// holds the port itself.
pub fn wait_udp_bound(port: u16) {
    // Lines read "sl local_address rem_address ...", the local address as
    // HEXIP:HEXPORT.
    let suffix = format!(":{port:04X}");
    let bound = || {
        std::fs::read_to_string("/proc/net/udp").is_ok_and(|t| {
            t.lines().skip(1).any(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|a| a.ends_with(&suffix))
            })
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !bound() {
        assert!(Instant::now() < deadline, "nothing listens on UDP {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub struct Server {
    child: Child,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    pub dir: tempfile::TempDir,
    logs: Arc<Mutex<Vec<String>>>,
    token: std::sync::OnceLock<String>,
    /// An auditor's token, for reading reports.
    auditor: std::sync::OnceLock<String>,
    /// Stored call records read so far, by call id.
    stored: Mutex<std::collections::HashMap<String, serde_json::Value>>,
    /// The PostgreSQL database it stores in, if not SQLite; dropped after kefu.
    pg: Option<pg::PgDatabase>,
}

impl Server {
    /// Starts kefu with the given dialplan directory (default: the demo hotline).
    pub fn start(dialplans: Option<&Path>) -> Self {
        Self::start_with(dialplans, "")
    }

    pub fn start_with(dialplans: Option<&Path>, extra_config: &str) -> Self {
        Self::start_full(dialplans, extra_config, None, false)
    }

    /// Starts kefu storing in a fresh PostgreSQL database of its own (dropped with
    /// the server) instead of an SQLite file.
    pub fn start_on_postgres(dialplans: Option<&Path>, extra_config: &str) -> Self {
        Self::start_full(
            dialplans,
            extra_config,
            Some(pg::PgDatabase::create_blocking()),
            false,
        )
    }

    /// Starts kefu as it ships: no setting of the test harness's own (the semantic
    /// re-ranker on), only `extra_config` and the ports.
    pub fn start_shipped(dialplans: Option<&Path>, extra_config: &str) -> Self {
        Self::start_full(dialplans, extra_config, None, true)
    }

    fn start_full(
        dialplans: Option<&Path>,
        extra_config: &str,
        mut pg: Option<pg::PgDatabase>,
        shipped: bool,
    ) -> Self {
        let mut extra = extra_config.to_string();
        if let Some(db) = &pg {
            extra.push_str(&format!("\ndatabase = {:?}\n", db.url));
        }
        // A port taken between choosing and binding makes kefu exit at start: try
        // again on others.
        for _ in 0..3 {
            if let Some(mut server) = Self::try_start(dialplans, &extra, shipped) {
                server.pg = pg.take();
                return server;
            }
        }
        panic!("kefu exited at start three times (see its stderr above)");
    }

    fn try_start(dialplans: Option<&Path>, extra_config: &str, shipped: bool) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let sip: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let rtp_base = 20000 + (std::process::id() % 200) as u16 * 100 + (sip.port() % 50) * 2;
        let config = dir.path().join("kefu.toml");
        std::fs::write(
            &config,
            format!(
                "{}reload_interval = \"200ms\"\n{}{}{}{extra_config}\n",
                // A test that needs many ports (a load benchmark) sets its own range.
                if extra_config.contains("rtp_ports") {
                    String::new()
                } else {
                    format!("rtp_ports = \"{}-{}\"\n", rtp_base, rtp_base + 60)
                },
                // One cache of example embeddings for every test server: each embeds
                // the demo knowledge base once, not once per test. The first server
                // to embed it may do so on a busy machine: it waits for the meaning
                // as long as it takes (unless the test says otherwise).
                if extra_config.contains("embed_cache") {
                    String::new()
                } else {
                    format!(
                        "embed_cache = {:?}\nsemantic_wait = \"600s\"\n",
                        repo().join("target/test-embeddings.bin")
                    )
                },
                // And one of rendered speech: the demo's answers, rendered ahead at
                // every start, are synthesised once for the whole suite (unless the
                // test names its own).
                if extra_config.contains("tts_cache") {
                    String::new()
                } else {
                    format!("tts_cache = {:?}\n", repo().join("target/test-tts-cache"))
                },
                // The sentence-embedding model costs seconds of CPU at start, which
                // would disturb the RTP timing tests running beside; tests of the
                // dialogue over a server turn it on (`semantic = true`).
                if shipped || extra_config.contains("semantic") {
                    ""
                } else {
                    "semantic = false\n"
                }
            ),
        )
        .unwrap();
        // Customer data is sealed (encryption is on by default): each server gets a
        // keyring of its own, as `kefu keys init` would write it.
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::write(
            dir.path().join("data/kefu.keys"),
            kefu::store::crypto::Keyring::new_line(1),
        )
        .unwrap();
        let dialplans = dialplans
            .map(Path::to_path_buf)
            .unwrap_or(repo().join("dialplans"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_kefu"))
            .args(["serve", "--log-format", "json", "--config"])
            .arg(&config)
            .args([
                "--sip",
                &sip.to_string(),
                "--http",
                &http.to_string(),
                "--dialplans",
            ])
            .arg(&dialplans)
            .arg("--audio")
            .arg(repo().join("audio"))
            .arg("--data")
            .arg(dir.path().join("data"))
            .arg("--models")
            .arg(repo().join("models"))
            .env(
                "KEFU_LOG",
                std::env::var("KEFU_TEST_LOG").unwrap_or_else(|_| {
                    "info,rsipstack=warn,ort=warn,whisper_rs=warn,webrtc=warn,webrtc_ice=error,\
                     webrtc_mdns=warn,dtls=warn,webrtc_srtp=warn,webrtc_sctp=warn,interceptor=warn"
                        .into()
                }),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start kefu");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut server = Self {
            child,
            sip,
            http,
            dir,
            logs,
            token: std::sync::OnceLock::new(),
            auditor: std::sync::OnceLock::new(),
            stored: Mutex::default(),
            pg: None,
        };
        // Generous: on a fresh checkout the first servers embed the demo knowledge
        // base's examples all at once, on 2 cores.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if server.http_get("/readyz").0 == 200 {
                return Some(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                eprintln!("kefu exited at start ({status}); trying other ports");
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "kefu did not become ready; logs:\n{}",
            server.logs().join("\n")
        );
    }

    /// The server's data directory (its database, keyring, caches).
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Where the server stores: its PostgreSQL database, or the SQLite file.
    pub fn database_url(&self) -> String {
        match &self.pg {
            Some(db) => db.url.clone(),
            None => kefu::store::sqlite_url(&self.data().join("kefu.db")),
        }
    }

    /// Runs a store command (`keys`, `backup`, `calls show`, ...) against this
    /// server's data directory: (success, stdout, stderr).
    pub fn kefu(&self, args: &[&str]) -> (bool, String, String) {
        self.kefu_with_input(args, "")
    }

    /// `kefu ARGS` as above, with `stdin` as its standard input.
    pub fn kefu_with_input(&self, args: &[&str], stdin: &str) -> (bool, String, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kefu"))
            .args(args)
            .arg("--data")
            .arg(self.data())
            .arg("--config")
            .arg(self.dir.path().join("kefu.toml"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kefu");
        if let Some(mut input) = child.stdin.take() {
            let _ = input.write_all(stdin.as_bytes());
        }
        let out = child.wait_with_output().expect("run kefu");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// A user `user` (role agent, password `password`) who works as the agent
    /// `name` at `extension`, made with `kefu users add` and `kefu agents add`.
    pub fn add_agent_user(&self, user: &str, password: &str, name: &str, extension: &str) {
        let (ok, _, err) = self.kefu_with_input(
            &["users", "add", user, "--role", "agent", "--password-stdin"],
            &format!("{password}\n"),
        );
        assert!(ok, "kefu users add {user}: {err}");
        let (ok, _, err) = self.kefu(&[
            "agents",
            "add",
            name,
            "--extension",
            extension,
            "--user",
            user,
        ]);
        assert!(ok, "kefu agents add {name}: {err}");
    }

    /// Signs `name` in over HTTP: (the session cookie as a `Cookie` header value,
    /// the CSRF token).
    pub async fn sign_in(&self, name: &str, password: &str) -> (String, String) {
        let r = reqwest::Client::new()
            .post(format!("http://{}/api/login", self.http))
            .json(&serde_json::json!({"name": name, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "sign-in as {name}");
        let cookie = r.headers()["set-cookie"].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_string();
        let body: serde_json::Value = r.json().await.unwrap();
        (cookie, body["csrf"].as_str().unwrap().to_string())
    }

    /// Starts a web chat for `visitor` (English): (conversation id, the start
    /// reply).
    pub async fn start_chat(&self, visitor: &str) -> (String, serde_json::Value) {
        let started: serde_json::Value = reqwest::Client::new()
            .post(format!("http://{}/api/chat/conversations", self.http))
            .json(&serde_json::json!({"visitor": visitor, "lang": "en"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let conv = started["conversation"].as_str().unwrap().to_string();
        (conv, started)
    }

    /// The customer writes `text` in web chat `conv` (whose key, given when it
    /// started, is `key`): the reply.
    pub async fn say_in_chat(&self, conv: &str, key: &str, text: &str) -> serde_json::Value {
        reqwest::Client::new()
            .post(format!(
                "http://{}/api/chat/conversations/{conv}/messages",
                self.http
            ))
            .header("x-kefu-key", key)
            .json(&serde_json::json!({ "text": text }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A web chat whose visitor asked for a person (`ask`), with the customer's
    /// WebSocket open: (conversation id, the start reply, the socket).
    pub async fn handed_over_chat(
        &self,
        visitor: &str,
        ask: &str,
    ) -> (String, serde_json::Value, Ws) {
        let (conv, started) = self.start_chat(visitor).await;
        let key = started["key"].as_str().unwrap();
        let (ws, _) = tokio_tungstenite::connect_async(format!(
            "ws://{}/api/chat/conversations/{conv}/ws?key={key}",
            self.http
        ))
        .await
        .unwrap();
        let r = self.say_in_chat(&conv, key, ask).await;
        assert_eq!(r["kind"], "handover", "{r}");
        (conv, started, ws)
    }

    /// An integrator API token for this server (made once, with `kefu tokens create`).
    pub fn api_token(&self) -> String {
        self.token
            .get_or_init(|| {
                let (ok, out, err) =
                    self.kefu(&["tokens", "create", "test-app", "--role", "integrator"]);
                assert!(ok, "kefu tokens create: {err}");
                out.trim().to_string()
            })
            .clone()
    }

    /// The supervisors' report (`GET /api/reports?QUERY`), read with an auditor's
    /// token.
    pub async fn report(&self, query: &str) -> serde_json::Value {
        let token = self
            .auditor
            .get_or_init(|| {
                let (ok, out, err) =
                    self.kefu(&["tokens", "create", "report-reader", "--role", "auditor"]);
                assert!(ok, "kefu tokens create: {err}");
                out.trim().to_string()
            })
            .clone();
        reqwest::Client::new()
            .get(format!("http://{}/api/reports?{query}", self.http))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The call record the store holds for `call_id` (via `kefu calls show`), waiting
    /// up to 10 s for it to be written.
    pub fn stored_call(&self, call_id: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (ok, out, err) = self.kefu(&["calls", "show", call_id]);
            if ok {
                return serde_json::from_str(&out).unwrap();
            }
            assert!(Instant::now() < deadline, "no stored call {call_id}: {err}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// (status, body) of a plain HTTP/1.1 GET.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let Ok(mut s) = TcpStream::connect_timeout(&self.http, Duration::from_millis(500)) else {
            return (0, String::new());
        };
        // Nothing listening can leave a socket connected to itself (TCP simultaneous
        // open); and a reply never comes from a dead server.
        if s.local_addr().ok() == s.peer_addr().ok() {
            return (0, String::new());
        }
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        );
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (
            status,
            text.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
        )
    }

    /// The records of the calls logged so far, as stored (`kefu calls show`); each
    /// is checked against its log summary, which must hold nothing personal.
    pub fn records(&self) -> Vec<serde_json::Value> {
        self.summaries()
            .iter()
            .map(|s| {
                let id = s["call_id"].as_str().unwrap();
                if let Some(r) = self.stored.lock().unwrap().get(id) {
                    return r.clone();
                }
                let r = self.stored_call(id);
                // The log's summary agrees with the store and holds nothing personal.
                for field in ["path", "end_reason", "dialplan", "transport", "codec"] {
                    assert_eq!(s[field], r[field], "{field} of {id}");
                }
                for field in ["from", "to", "vars", "dialogue", "prompts"] {
                    assert!(s.get(field).is_none(), "the log shows {field}: {s}");
                }
                // Only counts of what was keyed and said.
                let digits = r["digits"].as_str().unwrap_or_default().chars().count();
                assert_eq!(s["digits"], digits, "{id}");
                let said = r["utterances"].as_array().map_or(0, Vec::len);
                assert_eq!(s["utterances"], said, "{id}");
                self.stored
                    .lock()
                    .unwrap()
                    .insert(id.to_string(), r.clone());
                r
            })
            .collect()
    }

    /// The call summaries logged so far (each call's record without personal data).
    pub fn summaries(&self) -> Vec<serde_json::Value> {
        self.logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "kefu::call_record")
            .filter_map(|v| serde_json::from_str(v["record"].as_str()?).ok())
            .collect()
    }

    /// Waits for the call record of `call_id`.
    pub fn record(&self, call_id: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(r) = self.records().into_iter().find(|r| r["call_id"] == call_id) {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "no call record for {call_id}; logs:\n{}",
            self.logs().join("\n")
        );
    }

    /// GET /metrics with a bearer token over a plain socket (no async runtime
    /// needed): the response's head and body.
    pub fn get_metrics(&self, token: &str) -> (String, String) {
        let mut s = TcpStream::connect(self.http).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: kefu\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (head.to_string(), body.to_string())
    }

    /// Calls in progress, as `/readyz` tells them.
    pub fn active_calls(&self) -> Option<usize> {
        let (_, body) = self.http_get("/readyz");
        let rest = body.split("ready: ").nth(1)?;
        rest.split(' ').next()?.parse().ok()
    }

    /// Waits (at most 10 s) until no call is in progress.
    pub fn wait_no_calls(&self) {
        let left = self.wait_calls_end(Duration::from_secs(10));
        assert_eq!(left, Some(0), "calls still in progress");
    }

    /// Waits up to `timeout` until no call is in progress: how many still are.
    pub fn wait_calls_end(&self, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = self.active_calls();
            if left == Some(0) || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_log(&self, needle: &str, after: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.logs().iter().skip(after).any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` (zero: just looks) for kefu to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tests/browser/SCRIPT` (Debian's headless Chromium via playwright-core)
/// against the server with `args`, then the path of its screenshot,
/// `target/test-artifacts/SHOT.png` (kept as an artifact); returns the one JSON
/// line the script printed, and the screenshot's path.
pub fn browser(
    server: &Server,
    script: &str,
    args: &[&str],
    shot: &str,
) -> (serde_json::Value, PathBuf) {
    assert!(
        repo()
            .join("tests/browser/node_modules/playwright-core")
            .is_dir()
            && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Chromium and playwright-core: run deploy/setup.sh"
    );
    let artifacts = repo().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join(format!("{shot}.png"));
    let _ = std::fs::remove_file(&shot);
    let out = Command::new("node")
        .arg(repo().join("tests/browser").join(script))
        .arg(format!("http://{}", server.http))
        .args(args)
        .arg(&shot)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}\nserver:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.logs().join("\n")
    );
    let seen = serde_json::from_str(stdout.trim()).expect("one JSON line");
    (seen, shot)
}

/// The nearest-rank percentile `p` (0–1) of `v` (sorted here); NaN when empty.
pub fn nearest_rank(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = (p * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// kefu's CPU time so far (user + system), from /proc.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is field 3.
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
    let f: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap_or(0)).collect();
    // utime and stime are fields 14 and 15 (index 11 and 12 after the state).
    let ticks = f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0);
    Duration::from_millis(ticks * 10)
}

/// Runs SIPp once against the server with a scenario file; returns (exit ok, output).
pub fn sipp(server: &Server, scenario: &Path, service: &str, extra: &[&str]) -> (bool, String) {
    sipp_to(server.sip, scenario, service, extra)
}

/// One SIPp call of `scenario` to `to` (a kefu, or a proxy in front of one).
pub fn sipp_to(to: SocketAddr, scenario: &Path, service: &str, extra: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("sipp")
        .arg(to.to_string())
        .arg("-sf")
        .arg(scenario)
        .args(["-s", service, "-m", "1", "-l", "1", "-i", "127.0.0.1"])
        .args([
            "-p",
            &free_port().to_string(),
            "-mp",
            &free_ports(4).to_string(),
        ])
        .args([
            "-timeout",
            "90s",
            "-timeout_error",
            "-trace_err",
            "-nostdin",
        ])
        .args(extra)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect(
            "SIPp must be installed (Debian package sip-tester); run the README's test command",
        );
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
        text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    (out.status.success(), text)
}

/// One caller action in a generated SIPp scenario.
pub enum Step {
    Pause(u64),
    /// RFC 4733 key press replayed from SIPp's own pcap files.
    Rfc4733(char),
    /// SIP INFO key press with this content type.
    Info(&'static str, char),
    /// Replay any pcap file (e.g. generated in-band tones).
    Pcap(PathBuf),
}

const CALLER_HEADERS: &str = "From: \"Test Caller\" <sip:13800138000@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n\
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]\nCall-ID: [call_id]\n";

/// Writes a SIPp caller scenario: INVITE (offering `formats`), the steps, then it
/// answers kefu's BYE.
pub fn caller_scenario(dir: &Path, name: &str, telephone_event: bool, steps: &[Step]) -> PathBuf {
    let ending = r#"  <recv request="BYE" timeout="60000"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
"#;
    caller_scenario_ending(dir, name, telephone_event, steps, ending)
}

/// A SIPp caller scenario as above, ending with `ending` (scenario XML) instead
/// of waiting for kefu's BYE.
pub fn caller_scenario_ending(
    dir: &Path,
    name: &str,
    telephone_event: bool,
    steps: &[Step],
    ending: &str,
) -> PathBuf {
    let pcaps = PathBuf::from("/usr/share/sip-tester");
    let (fmts, te) = if telephone_event {
        (
            "0 101",
            "a=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\n",
        )
    } else {
        ("0", "")
    };
    let mut body = String::new();
    let mut cseq = 2;
    for step in steps {
        match step {
            Step::Pause(ms) => body.push_str(&format!("  <pause milliseconds=\"{ms}\"/>\n")),
            Step::Rfc4733(k) => {
                let name = match k {
                    '#' => "pound".to_string(),
                    '*' => "star".to_string(),
                    d => d.to_string(),
                };
                body.push_str(&format!(
                    "  <nop><action><exec play_pcap_audio=\"{}\"/></action></nop>\n",
                    pcaps.join(format!("dtmf_2833_{name}.pcap")).display()
                ));
            }
            Step::Pcap(p) => body.push_str(&format!(
                "  <nop><action><exec play_pcap_audio=\"{}\"/></action></nop>\n",
                p.display()
            )),
            Step::Info(ct, k) => {
                let content = if *ct == "application/dtmf-relay" {
                    format!("Signal={k}\nDuration=160\n")
                } else {
                    format!("{k}\n")
                };
                body.push_str(&format!(
                    "  <send retrans=\"500\"><![CDATA[\nINFO sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n\
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n{CALLER_HEADERS}CSeq: {cseq} INFO\n\
Max-Forwards: 70\nContent-Type: {ct}\nContent-Length: [len]\n\n{content}]]></send>\n  <recv response=\"200\"/>\n"
                ));
                cseq += 1;
            }
        }
    }
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<scenario name="{name}">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Test Caller" <sip:13800138000@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:13800138000@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP {fmts}
a=rtpmap:0 PCMU/8000
{te}a=ptime:20
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true"/>
  <send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{CALLER_HEADERS}CSeq: 1 ACK
Contact: <sip:13800138000@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
{body}{ending}</scenario>
"#
    );
    let path = dir.join(format!("{name}.xml"));
    std::fs::write(&path, xml).unwrap();
    path
}

/// The record of the one call a test placed (fails if there were more).
pub fn only_record(server: &Server) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let mut r = server.records();
        if r.len() == 1 {
            return r.remove(0);
        }
        assert!(r.len() < 2, "expected one call, got {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no call record; logs:\n{}", server.logs().join("\n"));
}

/// Writes RTP packets as a pcap that SIPp's play_pcap_audio can replay
/// (Ethernet/IPv4/UDP framing, 20 ms apart).
pub fn write_rtp_pcap(path: &Path, payloads: &[Vec<u8>], payload_type: u8, first_seq: u16) {
    let mut out = Vec::new();
    for v in [0xa1b2c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
        if v == 0x0004_0002 {
            out.extend_from_slice(&2u16.to_le_bytes());
            out.extend_from_slice(&4u16.to_le_bytes());
        } else {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    for (i, payload) in payloads.iter().enumerate() {
        let mut rtp = vec![0x80, payload_type & 0x7f];
        rtp.extend_from_slice(&first_seq.wrapping_add(i as u16).to_be_bytes());
        rtp.extend_from_slice(&(160u32 * (u32::from(first_seq) + i as u32)).to_be_bytes());
        rtp.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        rtp.extend_from_slice(payload);
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&[
            0x45,
            0,
            (ip_len >> 8) as u8,
            ip_len as u8,
            0,
            0,
            0,
            0,
            64,
            17,
            0,
            0,
            127,
            0,
            0,
            1,
            127,
            0,
            0,
            1,
        ]);
        frame.extend_from_slice(&[
            0x27,
            0x10,
            0x27,
            0x10,
            (udp_len >> 8) as u8,
            udp_len as u8,
            0,
            0,
        ]);
        frame.extend_from_slice(&rtp);
        let usec = i as u64 * 20_000;
        out.extend_from_slice(&((usec / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((usec % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    std::fs::File::create(path)
        .unwrap()
        .write_all(&out)
        .unwrap();
}

/// A bare SIP user agent over UDP, for exact control of what goes on the wire.
pub struct RawUa {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    pub rtp: UdpSocket,
}

impl RawUa {
    pub fn new(server: SocketAddr) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        Self { sock, server, rtp }
    }

    pub fn local(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    pub fn send(&self, msg: &str) {
        self.sock
            .send_to(
                msg.replace('\n', "\r\n")
                    .replace("\r\r\n", "\r\n")
                    .as_bytes(),
                self.server,
            )
            .unwrap();
    }

    /// The next SIP message within `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 8192];
        let (n, _) = self.sock.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).to_string())
    }

    /// Waits for a response with this status, skipping others; returns it.
    pub fn expect_status(&self, status: u16, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Some(m) = self.recv(deadline - Instant::now()) {
                if m.starts_with(&format!("SIP/2.0 {status} ")) {
                    return m;
                }
                seen.push(m.lines().next().unwrap_or_default().to_string());
            }
        }
        panic!("no {status} response; saw {seen:?}");
    }

    pub fn invite(&self, call_id: &str, branch: &str, service: &str) -> String {
        let me = self.local();
        let rtp = self.rtp.local_addr().unwrap();
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
            rtp.port()
        );
        format!(
            "INVITE sip:{service}@{srv} SIP/2.0\nVia: SIP/2.0/UDP {me};branch={branch};rport\nFrom: <sip:13900139000@{me}>;tag=raw1\nTo: <sip:{service}@{srv}>\nCall-ID: {call_id}\nCSeq: 1 INVITE\nContact: <sip:13900139000@{me}>\nMax-Forwards: 70\nContent-Type: application/sdp\nContent-Length: {}\n\n{sdp}",
            sdp.len(),
            srv = self.server
        )
    }

    /// Waits for a request with this method from kefu and answers it 200 OK.
    pub fn answer_request(&self, method: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let Some(m) = self.recv(deadline - Instant::now()) else {
                continue;
            };
            if !m.starts_with(&format!("{method} ")) {
                continue;
            }
            self.ok(&m);
            return;
        }
        panic!("no {method} from kefu");
    }

    /// Answers kefu's request `m` with 200 OK.
    pub fn ok(&self, m: &str) {
        let mut reply = String::from("SIP/2.0 200 OK\n");
        for line in m.lines() {
            let lower = line.to_ascii_lowercase();
            if ["via:", "from:", "to:", "call-id:", "cseq:"]
                .iter()
                .any(|h| lower.starts_with(h))
            {
                reply.push_str(line);
                reply.push('\n');
            }
        }
        reply.push_str("Content-Length: 0\n\n");
        self.send(&reply);
    }

    /// The next `n` RTP packets kefu sends this UA (5 s at most for each):
    /// (payload type, marker).
    pub fn rtp_packets(&self, n: usize) -> Vec<(u8, bool)> {
        self.rtp
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 2048];
        (0..n)
            .map(|i| {
                let (len, _) = self
                    .rtp
                    .recv_from(&mut buf)
                    .unwrap_or_else(|e| panic!("RTP packet {i} of {n}: {e}"));
                let pkt = rtp_rs::RtpReader::new(&buf[..len]).unwrap();
                (pkt.payload_type(), pkt.mark())
            })
            .collect()
    }

    /// Places a call and ACKs its 200 OK; returns the 200 OK.
    pub fn answered_call(&self, call_id: &str, service: &str) -> String {
        self.send(&self.invite(call_id, &format!("z9hG4bK-{call_id}"), service));
        let ok = self.expect_status(200, Duration::from_secs(5));
        self.send(&self.in_dialog(&ok, "ACK", 1, &format!("z9hG4bK-{call_id}-ack")));
        ok
    }

    /// In-dialog request built from a 200 OK to our INVITE.
    pub fn in_dialog(&self, ok: &str, method: &str, cseq: u32, branch: &str) -> String {
        self.in_dialog_with_sdp(ok, method, cseq, branch, "")
    }

    /// An SDP offer for this UA's RTP socket with these payload types and attributes.
    pub fn sdp(&self, version: u32, formats: &str, attributes: &str) -> String {
        format!(
            "v=0\r\no=- 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP {formats}\r\n{attributes}",
            self.rtp.local_addr().unwrap().port()
        )
    }

    /// In-dialog request with an SDP body (empty: no body).
    pub fn in_dialog_with_sdp(
        &self,
        ok: &str,
        method: &str,
        cseq: u32,
        branch: &str,
        sdp: &str,
    ) -> String {
        let me = self.local();
        let header = |name: &str| {
            ok.lines()
                .find(|l| {
                    l.to_ascii_lowercase()
                        .starts_with(&format!("{}:", name.to_ascii_lowercase()))
                })
                .map(|l| l.split_once(':').unwrap().1.trim().to_string())
                .unwrap_or_default()
        };
        let contact = header("Contact");
        let uri = contact
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap_or_default()
            .to_string();
        let content_type = if sdp.is_empty() {
            String::new()
        } else {
            format!("Contact: <sip:13900139000@{me}>\nContent-Type: application/sdp\n")
        };
        format!(
            "{method} {uri} SIP/2.0\nVia: SIP/2.0/UDP {me};branch={branch};rport\nFrom: {}\nTo: {}\nCall-ID: {}\nCSeq: {cseq} {method}\nMax-Forwards: 70\n{content_type}Content-Length: {}\n\n{sdp}",
            header("From"),
            header("To"),
            header("Call-ID"),
            sdp.len()
        )
    }
}

/// µ-law frames of 20 ms for a sentence spoken by kefu's own TTS.
pub fn spoken_frames(text: &str, dir: &Path) -> Vec<[u8; 160]> {
    let wav = dir.join("caller.wav");
    let out = Command::new(env!("CARGO_BIN_EXE_kefu"))
        .args(["say", text, "-o"])
        .arg(&wav)
        .arg("--models")
        .arg(repo().join("models"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<i16> = hound::WavReader::open(&wav)
        .unwrap()
        .into_samples::<i16>()
        .map(Result::unwrap)
        .collect();
    pcmu_frames(&samples)
}

/// 8 kHz samples as 20 ms µ-law frames (the last one padded with silence).
pub fn pcmu_frames(samples: &[i16]) -> Vec<[u8; 160]> {
    samples
        .chunks(160)
        .map(|c| {
            let mut pcm = [0i16; 160];
            pcm[..c.len()].copy_from_slice(c);
            let mut frame = [0u8; 160];
            kefu::media::g711::Law::Pcmu.encode(&pcm, &mut frame);
            frame
        })
        .collect()
}

/// A plan whose first node answers questions from the demo knowledge base
/// (number 500; English).
pub const ASK_PLAN: &str = r#"[dialplan]
name = "ask"
numbers = ["500"]
language = "en"
start = "question"

[nodes.question]
type = "ask"
prompt = "en/main-menu.wav"
timeout = "3s"
max_failures = 1
on_failure = "bye"
on_handover = "bye"
on_goodbye = "bye"

[nodes.bye]
type = "hangup"
"#;

/// SIPp calls the `ask` plan ([`ASK_PLAN`], number 500) and says `words`;
/// returns the server, the call's record and the plan's directory. With
/// `shipped`, kefu runs its shipped defaults (the default Whisper model, the
/// semantic re-ranker); otherwise the small English model and words-only
/// matching. `settings` go into kefu.toml.
pub fn ask_call_with(
    words: &str,
    shipped: bool,
    settings: &str,
) -> (Server, serde_json::Value, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ask.toml"), ASK_PLAN).unwrap();
    let payloads: Vec<Vec<u8>> = spoken_frames(words, dir.path())
        .iter()
        .map(|f| f.to_vec())
        .collect();
    let pcap = dir.path().join("question.pcap");
    write_rtp_pcap(&pcap, &payloads, 0, 3000);
    let kb = format!(
        "kb = \"{}\"\n{settings}",
        repo().join("dialplans/kb").display()
    );
    let server = if shipped {
        Server::start_shipped(Some(dir.path()), &kb)
    } else {
        Server::start_with(
            Some(dir.path()),
            &format!("asr_model = \"tiny.en-q8_0\"\n{kb}"),
        )
    };
    let scenario = caller_scenario(
        dir.path(),
        "spoken_question",
        true,
        &[Step::Pause(1000), Step::Pcap(pcap)],
    );
    let (ok, out) = sipp(&server, &scenario, "500", &[]);
    assert!(
        ok,
        "SIPp failed:\n{out}\nserver:\n{}",
        server.logs().join("\n")
    );
    let r = only_record(&server);
    (server, r, dir)
}

/// The `ask` call's first turns: the caller's question ("…close…") heard, the
/// opening-hours intent matched, and answered.
pub fn assert_hours_answered(r: &serde_json::Value) {
    let turns = r["dialogue"]
        .as_array()
        .unwrap_or_else(|| panic!("no dialogue in {r}"));
    assert_eq!(turns[0]["speaker"], "customer", "{r}");
    assert!(
        turns[0]["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("close"),
        "{r}"
    );
    assert_eq!(turns[0]["intent"], "opening_hours", "{r}");
    assert_eq!(turns[1]["speaker"], "bot", "{r}");
}
