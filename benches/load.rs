//! Whole-call capacity on loopback (bounded in count and time; nothing leaves
//! 127.0.0.1): SIPp places N concurrent calls into the demo hotline; each holds
//! for a set time, exchanging RTP both ways and walking the DTMF menu (2: opening
//! hours, then 9: back to the menu, then 2 again, ... as RFC 4733 events) until
//! SIPp hangs up.
//!
//! SIPp does the signalling (INVITE, ACK, BYE), at a set call rate. Each call's
//! SDP names a media port this harness owns (SIPp reads it from an injection
//! file), so the harness is each caller's phone: it receives kefu's RTP with
//! kernel receive timestamps (SO_TIMESTAMPNS: what the callers received, when,
//! unaffected by this harness's own scheduling), and sends 20 ms silence frames
//! and the key presses from the same port (symmetric RTP, paced from one loop).
//! SIPp's message trace gives when each INVITE left, its 200 OK arrived and its
//! ACK left (same clock: CLOCK_REALTIME).
//!
//! Reported per run: calls attempted, completed, failed; INVITE→200 p50/p99;
//! ACK→first RTP p50/p99; inter-packet jitter p99 (|arrival gap − timestamp gap|
//! between consecutive packets) and the RFC 3550 interarrival jitter p99 over
//! calls; the audio packets each call received against those it was owed (its
//! RTP timestamp span); which menu nodes the calls walked (from the call
//! records); kefu's CPU per call while every call is up, its RSS before, at the
//! peak and after the calls ended.
//!
//! What the callers send (`KEFU_LOAD_VOICE`): `silence` (digital silence: the
//! voice activity detector's energy gate skips every frame), `noise` (line noise
//! at −45 dBFS, as a mobile or analogue line carries: the detector runs on every
//! frame of a listening node), or `speech` (line noise, and each caller says "What
//! are your opening hours?" (Piper speech, G.711) during the main menu instead of
//! pressing 2: recognition runs too). The default runs all three.
//! kefu's CPU is reported twice: while every call is up (a window), and over the
//! whole run from the first INVITE to the last call's end (set-up and tear-down
//! included), per call.
//!
//! Run: `cargo bench --bench load` (needs `deploy/setup.sh`). Settings:
//! `KEFU_LOAD_CALLS` (default `1000`; a list such as `100,500,1000` runs each),
//! `KEFU_LOAD_HOLD` (seconds each call lasts, default 30), `KEFU_LOAD_RATE` (new
//! calls per second, default 200), `KEFU_LOAD_VOICE` (`silence,noise,speech`),
//! `KEFU_LOAD_PERF` (a file: record a `perf` CPU profile of kefu while every call
//! is up), `KEFU_LOAD_POOL=1` (speaking callers are heard by a second kefu node,
//! a recognition pool with `serve_speech`, over OpenAI's audio API). Under `cargo test` it places 3 calls of each kind for 10 s as a smoke
//! run. Figures go to benches/RESULTS.md.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Server, free_port, repo};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

const FRAME: Duration = Duration::from_millis(20);
/// How often the phones read what arrived and send what is due.
const PHONE_TICK: Duration = Duration::from_millis(2);
/// Keys each caller presses, and when (after kefu's first packet reached it): 2
/// during the menu prompt (opening hours), 9 during "anything else?" (back to
/// the menu), 2 again, and so on.
const KEYS: &[(u64, u8)] = &[
    (4_000, 2),
    (15_000, 9),
    (19_000, 2),
    (30_000, 9),
    (34_000, 2),
    (45_000, 9),
    (49_000, 2),
];
/// RFC 4733 payload type offered in the SDP.
const EVENT_PT: u8 = 101;
/// When a speaking caller starts to speak (after kefu's first packet reached it):
/// during the main menu's prompt, which listens, when the others press 2.
const SPEAK_AT: Duration = Duration::from_millis(4_000);

/// What a caller sends between key presses.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Voice {
    Silence,
    Noise,
    Speech,
}

impl Voice {
    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "silence" => Some(Self::Silence),
            "noise" => Some(Self::Noise),
            "speech" => Some(Self::Speech),
            _ => None,
        }
    }
}

/// The caller's audio, G.711 µ-law frames: line noise (cycled), and the
/// utterance with the noise under it.
struct Sound {
    noise: Vec<[u8; 160]>,
    speech: Vec<[u8; 160]>,
}

impl Sound {
    fn new(dir: &Path) -> Self {
        use kefu::media::g711::Law;
        // White noise at −45 dBFS RMS (uniform: RMS = peak / √3).
        let peak = 32768.0 * 10f64.powf(-45.0 / 20.0) * 3f64.sqrt();
        let noise_pcm = |_| (((rand::random::<f64>() * 2.0) - 1.0) * peak) as i16;
        let encode = |pcm: &[i16; 160]| {
            let mut f = [0u8; 160];
            Law::Pcmu.encode(pcm, &mut f);
            f
        };
        let noise: Vec<[u8; 160]> = (0..250)
            .map(|_| encode(&std::array::from_fn(noise_pcm)))
            .collect();
        // The utterance as PCM, with noise added.
        let speech = common::spoken_frames("What are your opening hours?", dir)
            .iter()
            .map(|f| {
                let mut pcm = [0i16; 160];
                Law::Pcmu.decode(f, &mut pcm);
                for s in pcm.iter_mut() {
                    *s = s.saturating_add(noise_pcm(0));
                }
                encode(&pcm)
            })
            .collect();
        Self { noise, speech }
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Realtime clock in nanoseconds.
fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// An even RTP port and the odd one above it for RTCP (RFC 3550 §11), as a
/// phone binds them.
fn media_ports() -> (UdpSocket, std::net::UdpSocket) {
    for _ in 0..1000 {
        let sock =
            UdpSocket::bind("127.0.0.1:0".parse().expect("addr")).expect("bind a media port");
        let port = sock.local_addr().expect("addr").port();
        if !port.is_multiple_of(2) {
            continue;
        }
        if let Ok(rtcp) = std::net::UdpSocket::bind(("127.0.0.1", port + 1)) {
            return (sock, rtcp);
        }
    }
    panic!("no even media port with a free odd neighbour");
}

/// One caller's phone, as this harness plays it.
struct Phone {
    sock: UdpSocket,
    /// The RTCP port next to the RTP port, held as a phone holds it (kefu's
    /// reports go there; this harness does not read them).
    _rtcp: std::net::UdpSocket,
    port: u16,
    /// kefu's media address (learnt from its first packet) and when that packet
    /// arrived (kernel timestamp, ns) and was seen (for the key schedule).
    kefu: Option<SocketAddr>,
    first_ns: Option<i128>,
    first_seen: Option<Instant>,
    received: u64,
    /// Extended RTP timestamp span: first and last.
    first_ts: u64,
    last_ts: u64,
    last: Option<(i128, u64)>,
    /// RFC 3550 interarrival jitter (ms).
    jitter: f64,
    /// |D| for consecutive packets (ms).
    gaps: Vec<f32>,
    // What it sends.
    seq: u16,
    ts: u32,
    next_key: usize,
    /// A key being sent: (key, packets sent so far, its timestamp).
    pressing: Option<(u8, u8, u32)>,
    /// When its next frame is due (each phone on its own 20 ms grid, from when it
    /// first heard kefu: phones are not in step with each other).
    next_send: Option<Instant>,
    voice: Voice,
    /// Frames of audio sent so far (where it is in the noise and the utterance).
    frames: usize,
    /// Frames of the utterance sent so far.
    spoken: usize,
}

fn rtp(pt: u8, seq: u16, ts: u32, marker: bool, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0x80, pt | if marker { 0x80 } else { 0 }]);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&0x4c4f_4144u32.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Turns on kernel receive timestamps.
fn timestamps(sock: &UdpSocket) {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and option pointer of the right size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_TIMESTAMPNS");
}

/// One datagram with its kernel receive time (ns, realtime); None when none is
/// waiting.
fn recv_stamped(sock: &UdpSocket, buf: &mut [u8]) -> Option<(usize, SocketAddr, i128)> {
    // SAFETY: recvmsg with buffers that outlive the call; the control message is
    // read only within the length the kernel wrote.
    unsafe {
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u8; 64];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut addr as *mut libc::sockaddr_in).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len();
        let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT);
        if n < 0 {
            return None;
        }
        let mut at = now_ns();
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                at = i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        let from = SocketAddr::from((
            std::net::Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
            u16::from_be(addr.sin_port),
        ));
        Some((n as usize, from, at))
    }
}

impl Phone {
    fn received(&mut self, packet: &[u8], from: SocketAddr, at: i128) {
        if packet.len() < 12 || packet[0] >> 6 != 2 {
            return;
        }
        let ts = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        if self.kefu.is_none() {
            self.kefu = Some(from);
            self.first_ns = Some(at);
            self.first_seen = Some(Instant::now());
            self.first_ts = u64::from(ts);
            self.last_ts = u64::from(ts);
        }
        // Extend the timestamp past wrap-around, near the last one.
        let last = self.last_ts;
        let ext = {
            let base = last & !0xffff_ffff;
            let cands = [base.wrapping_sub(1 << 32), base, base + (1 << 32)];
            let mut best = base + u64::from(ts);
            for c in cands {
                let v = c.wrapping_add(u64::from(ts));
                if v.abs_diff(last) < best.abs_diff(last) {
                    best = v;
                }
            }
            best
        };
        self.received += 1;
        if let Some((prev_at, prev_ts)) = self.last
            && ext > prev_ts
        {
            let arrival_ms = (at - prev_at) as f64 / 1e6;
            let media_ms = (ext - prev_ts) as f64 / 8.0;
            let d = (arrival_ms - media_ms).abs();
            self.jitter += (d - self.jitter) / 16.0;
            // Consecutive packets only (a gap is loss, counted apart).
            if ext - prev_ts == 160 {
                self.gaps.push(d as f32);
            }
        }
        if ext >= self.last_ts {
            self.last_ts = ext;
            self.last = Some((at, ext));
        }
    }

    fn owed(&self) -> u64 {
        if self.received == 0 {
            0
        } else {
            (self.last_ts - self.first_ts) / 160 + 1
        }
    }

    /// Sends its frame if one is due.
    fn send_due(&mut self, now: Instant, out: &mut Vec<u8>, sound: &Sound) {
        let Some(seen) = self.first_seen else {
            return;
        };
        let due = self.next_send.unwrap_or(seen);
        if now < due {
            return;
        }
        self.next_send = Some(if due + FRAME < now {
            now + FRAME
        } else {
            due + FRAME
        });
        self.send(out, sound);
    }

    /// The next 20 ms packet: audio (silence, noise or speech), or part of a key
    /// press.
    fn send(&mut self, out: &mut Vec<u8>, sound: &Sound) {
        let (Some(to), Some(seen)) = (self.kefu, self.first_seen) else {
            return;
        };
        // A speaking caller says what it wants instead of pressing the first 2.
        if self.voice == Voice::Speech && self.next_key == 0 {
            self.next_key = 1;
        }
        let speaking = self.voice == Voice::Speech
            && seen.elapsed() >= SPEAK_AT
            && self.spoken < sound.speech.len();
        if !speaking
            && self.pressing.is_none()
            && let Some(&(at, key)) = KEYS.get(self.next_key)
            && seen.elapsed() >= Duration::from_millis(at)
        {
            self.pressing = Some((key, 0, self.ts));
            self.next_key += 1;
        }
        match self.pressing {
            Some((key, n, ts)) => {
                let duration = (u16::from(n.min(3)) + 1) * 160;
                let end = if n >= 3 { 0x80 } else { 0 };
                rtp(
                    EVENT_PT,
                    self.seq,
                    ts,
                    n == 0,
                    &[key, end | 10, (duration >> 8) as u8, duration as u8],
                    out,
                );
                self.pressing = (n < 5).then_some((key, n + 1, ts));
            }
            None if speaking => {
                rtp(0, self.seq, self.ts, false, &sound.speech[self.spoken], out);
                self.spoken += 1;
            }
            None if self.voice == Voice::Silence => {
                rtp(0, self.seq, self.ts, false, &[0xff; 160], out);
            }
            None => {
                let noise = &sound.noise[self.frames % sound.noise.len()];
                rtp(0, self.seq, self.ts, false, noise, out);
            }
        }
        self.frames += 1;
        let _ = self.sock.send_to(out, to);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(160);
    }
}

/// A child process that is stopped and reaped however the run ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The SIPp caller: INVITE offering this harness's port for the call, ACK, hold,
/// BYE.
fn scenario(dir: &Path, hold: Duration) -> std::path::PathBuf {
    let headers = "From: \"Load\" <sip:1380000[call_number]@[local_ip]:[local_port]>;tag=[pid]L[call_number]\n\
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]\nCall-ID: [call_id]\n";
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<scenario name="kefu load">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Load" <sip:1380000[call_number]@[local_ip]:[local_port]>;tag=[pid]L[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:load@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio [field0] RTP/AVP 0 {EVENT_PT}
a=rtpmap:0 PCMU/8000
a=rtpmap:{EVENT_PT} telephone-event/8000
a=fmtp:{EVENT_PT} 0-15
a=ptime:20
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true"/>
  <send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{headers}CSeq: 1 ACK
Contact: <sip:load@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <pause milliseconds="{hold}"/>
  <send retrans="500"><![CDATA[
BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{headers}CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"#,
        hold = hold.as_millis()
    );
    let path = dir.join("load.xml");
    std::fs::write(&path, xml).expect("scenario");
    path
}

/// A /proc/PID/status figure in KiB (VmRSS, VmHWM).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One run of `n` calls; `smoke`: no waiting for memory to settle afterwards, and
/// every call must complete with audio both ways.
fn run(n: usize, hold: Duration, rate: usize, voice: Voice, sound: &Sound, smoke: bool) {
    // KEFU_LOAD_POOL=1: speaking callers are heard by another kefu node (a
    // recognition pool, `serve_speech`) over OpenAI's audio API.
    let pool = (voice == Voice::Speech && std::env::var("KEFU_LOAD_POOL").is_ok_and(|v| v == "1"))
        .then(|| {
            let pool = Server::start_with(None, "serve_speech = true\nrtp_ports = \"60000-60100\"");
            let token = pool.api_token();
            (pool, token)
        });
    let remote = pool.as_ref().map_or(String::new(), |(p, token)| {
        format!(
            "[recognition]\nen = \"pool\"\n\n[[speech_service]]\nname = \"pool\"\n\
             url = \"http://{}/v1\"\napi_key = \"{token}\"\ntimeout = \"4s\"\n",
            p.http
        )
    });
    let server = Server::start_with(
        None,
        &format!(
            // The calls come from a trunk, as a carrier's would (no per-source limits).
            "max_calls = {}\nrtp_ports = \"20000-{}\"\n\
             [[trunk]]\nname = \"load\"\naddresses = [\"127.0.0.1\"]\n{remote}",
            n + 100,
            20000 + 4 * (n + 100)
        ),
    );
    let pid = server.pid();
    // Text prompts rendered once, before the calls (as `deploy/demo.sh` does).
    let rendered = Command::new(env!("CARGO_BIN_EXE_kefu"))
        .args(["prompts", "render"])
        .arg(repo().join("dialplans"))
        .arg("--audio")
        .arg(repo().join("audio"))
        .arg("--models")
        .arg(repo().join("models"))
        .arg("--data")
        .arg(server.data())
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(rendered, "kefu prompts render failed");
    std::thread::sleep(Duration::from_secs(1));
    let rss_before = status_kib(pid, "VmRSS:");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut poll_reg = Poll::new().expect("poll");
    let mut phones: Vec<Phone> = (0..n)
        .map(|i| {
            let (mut sock, rtcp) = media_ports();
            timestamps(&sock);
            poll_reg
                .registry()
                .register(&mut sock, Token(i), Interest::READABLE)
                .expect("register");
            let port = sock.local_addr().expect("addr").port();
            Phone {
                sock,
                _rtcp: rtcp,
                port,
                kefu: None,
                first_ns: None,
                first_seen: None,
                received: 0,
                first_ts: 0,
                last_ts: 0,
                last: None,
                jitter: 0.0,
                gaps: Vec::with_capacity(hold.as_millis() as usize / 20 + 50),
                seq: 1,
                ts: 16_000,
                next_key: 0,
                pressing: None,
                next_send: None,
                voice,
                frames: 0,
                spoken: 0,
            }
        })
        .collect();
    let mut csv = String::from("SEQUENTIAL\n");
    for p in &phones {
        csv.push_str(&format!("{};\n", p.port));
    }
    std::fs::write(dir.path().join("calls.csv"), csv).expect("csv");
    let xml = scenario(dir.path(), hold);
    // kefu's CPU over the whole run: from before the first INVITE to after the
    // last call ended (below).
    let cpu_run_start = common::cpu_time(pid);
    let trace = dir.path().join("messages.log");
    let n_s = n.to_string();
    let mut sipp = Reaped(
        Command::new("sipp")
            .arg(server.sip.to_string())
            .arg("-sf")
            .arg(&xml)
            .arg("-inf")
            .arg(dir.path().join("calls.csv"))
            .args(["-s", "4008002000", "-m", &n_s, "-l", &n_s])
            .args(["-r", &rate.to_string(), "-rp", "1000", "-i", "127.0.0.1"])
            .args(["-p", &free_port().to_string()])
            .args(["-trace_msg", "-message_file"])
            .arg(&trace)
            .args([
                "-timeout",
                &format!("{}s", hold.as_secs() + 60 + (n / rate) as u64),
                "-timeout_error",
                "-nostdin",
            ])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("SIPp must be installed (Debian package sip-tester): deploy/setup.sh"),
    );

    // The phones: receive with kernel timestamps, send every 20 ms, until SIPp
    // is done. kefu's CPU is taken over a window when every call is up.
    let started = Instant::now();
    let ramp = Duration::from_secs_f64(n as f64 / rate as f64);
    let window_start = started + ramp + Duration::from_secs(3);
    // Every call is up from the end of the ramp until the first one hangs up.
    let window_end = started + hold - Duration::from_secs(1);
    let mut cpu_window: Option<(Instant, Duration)> = None;
    let mut cpu_per_call = f64::NAN;
    let mut rss_peak = 0;
    let mut events = Events::with_capacity(1024);
    let mut buf = [0u8; 2048];
    let mut out = Vec::with_capacity(200);
    let mut next_tick = Instant::now() + FRAME;
    // RSS is read every 10th tick (200 ms): a /proc read per frame is work the
    // harness need not take from the cores kefu runs on.
    let mut ticks = 0u64;
    let mut sipp_status = None;
    let mut perf: Option<Reaped> = None;
    while sipp_status.is_none() {
        // The phones read at a 2 ms tick, not woken per packet: on loopback the
        // sender's system call does the receiver's delivery, wake-up included, so
        // a harness blocked in epoll_wait would put the cost of waking it on
        // kefu's sends (a network card would take that over in a real
        // deployment). The kernel's receive timestamps keep arrival times exact.
        // Each phone sends on its own 20 ms grid, as real phones do, not all in
        // one burst.
        std::thread::sleep(
            next_tick
                .min(Instant::now() + PHONE_TICK)
                .saturating_duration_since(Instant::now()),
        );
        loop {
            poll_reg
                .poll(&mut events, Some(Duration::ZERO))
                .expect("poll");
            if events.is_empty() {
                break;
            }
            for e in &events {
                let p = &mut phones[e.token().0];
                while let Some((len, from, at)) = recv_stamped(&p.sock, &mut buf) {
                    p.received(&buf[..len], from, at);
                }
            }
        }
        let now = Instant::now();
        for p in phones.iter_mut() {
            p.send_due(now, &mut out, sound);
        }
        if now >= next_tick {
            next_tick += FRAME;
            if next_tick < now {
                next_tick = now + FRAME;
            }
            ticks += 1;
            if ticks.is_multiple_of(10) {
                rss_peak = rss_peak.max(status_kib(pid, "VmRSS:"));
            }
            if cpu_window.is_none() && now >= window_start && window_start < window_end {
                cpu_window = Some((now, common::cpu_time(pid)));
                // KEFU_LOAD_PERF=FILE: a CPU profile of kefu while every call is up.
                if let Ok(file) = std::env::var("KEFU_LOAD_PERF") {
                    let secs = window_end
                        .saturating_duration_since(now)
                        .as_secs()
                        .clamp(1, 20);
                    perf = Command::new("perf")
                        .args(["record", "-F", "999", "-g", "-o", &file, "-p"])
                        .arg(pid.to_string())
                        .args(["--", "sleep", &secs.to_string()])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .ok()
                        .map(Reaped);
                }
            }
            if let Some((t0, c0)) = cpu_window
                && now >= window_end
                && cpu_per_call.is_nan()
            {
                let share = (common::cpu_time(pid) - c0).as_secs_f64() / (now - t0).as_secs_f64();
                cpu_per_call = share * 100.0 / n as f64;
            }
            sipp_status = sipp.0.try_wait().expect("sipp");
            if started.elapsed() > hold + ramp + Duration::from_secs(120) {
                // Bounded: SIPp is stopped and the run reported as it stands.
                let _ = sipp.0.kill();
                sipp_status = sipp.0.wait().ok();
                println!("  the run overran its bound; SIPp was stopped");
            }
        }
    }
    if let Some(mut p) = perf.take() {
        let _ = p.0.wait();
    }
    // kefu ends a call SIPp gave up on by itself (no ACK, no RTP): bounded wait.
    let left = server.wait_calls_end(Duration::from_secs(60));
    let cpu_run = (common::cpu_time(pid) - cpu_run_start).as_secs_f64();
    if left != Some(0) {
        println!("  calls still in progress 60 s after SIPp finished: {left:?}");
    }
    // Calls ended: let kefu settle, then see what it gave back.
    std::thread::sleep(Duration::from_secs(3));
    let rss_after = status_kib(pid, "VmRSS:");
    let hwm = status_kib(pid, "VmHWM:");
    // And once the SIP stack let the calls' last transactions go (Timer J: 32 s
    // after each BYE over UDP) and kefu trimmed again.
    if !smoke {
        std::thread::sleep(Duration::from_secs(38));
    }
    let rss_settled = status_kib(pid, "VmRSS:");

    let trace_text = std::fs::read_to_string(&trace).unwrap_or_default();
    let sig = common::sipp_trace::parse_trace(&trace_text);
    let completed = sig.values().filter(|s| s.bye_ok).count();
    let mut setup: Vec<f64> = sig
        .values()
        .filter_map(|s| Some((s.ok? - s.invite?) as f64 / 1e6))
        .collect();
    let mut first_rtp: Vec<f64> = sig
        .iter()
        .filter_map(|(num, s)| {
            let phone = phones.get((*num as usize).checked_sub(1)? % n)?;
            Some((phone.first_ns? - s.ack?) as f64 / 1e6)
        })
        .collect();
    let mut gaps: Vec<f64> = phones
        .iter()
        .flat_map(|p| p.gaps.iter().map(|g| f64::from(*g)))
        .collect();
    let mut jitter: Vec<f64> = phones.iter().map(|p| p.jitter).collect();
    let shares: Vec<f64> = phones
        .iter()
        .filter(|p| p.owed() > 0)
        .map(|p| p.received as f64 / p.owed() as f64)
        .collect();
    let (received, owed): (u64, u64) = phones
        .iter()
        .fold((0, 0), |(r, o), p| (r + p.received, o + p.owed()));
    let worst = shares.iter().copied().fold(f64::INFINITY, f64::min);
    let below = shares.iter().filter(|s| **s < 0.995).count();
    // Which nodes the calls walked, from the call records kefu logged.
    let mut walked: HashMap<String, usize> = HashMap::new();
    for r in server.summaries() {
        if let Some(path) = r["path"].as_array() {
            let path: Vec<&str> = path.iter().filter_map(|v| v.as_str()).collect();
            let key = if path
                .windows(4)
                .any(|w| w == ["main_menu", "opening_hours", "more", "main_menu"])
            {
                "menu walked (2, 9, 2)"
            } else if path.contains(&"opening_hours") {
                "opening hours reached"
            } else {
                "menu not walked"
            };
            *walked.entry(key.to_string()).or_default() += 1;
        }
    }
    println!(
        "N = {n} calls ({voice:?}), {hold:?} each, {rate} calls/s: attempted {}, completed {completed}, failed {}",
        sig.len().max(n),
        sig.len().max(n) - completed
    );
    println!(
        "  INVITE→200 p50 {:.2} ms, p99 {:.2} ms; ACK→first RTP p50 {:.2} ms, p99 {:.2} ms",
        common::nearest_rank(&mut setup, 0.5),
        common::nearest_rank(&mut setup, 0.99),
        common::nearest_rank(&mut first_rtp, 0.5),
        common::nearest_rank(&mut first_rtp, 0.99)
    );
    println!(
        "  jitter: inter-packet |D| p99 {:.2} ms (max {:.2} ms); RFC 3550 jitter p99 over calls {:.2} ms",
        common::nearest_rank(&mut gaps, 0.99),
        common::nearest_rank(&mut gaps, 1.0),
        common::nearest_rank(&mut jitter, 0.99)
    );
    println!(
        "  audio packets received {received} of {owed} owed ({:.3} %); worst call {:.2} %; calls under 99.5 %: {below}",
        received as f64 * 100.0 / owed.max(1) as f64,
        worst * 100.0
    );
    println!(
        "  kefu CPU {:.4} % of a core per call ({:.1} % for all); RSS before {:.1} MiB, peak {:.1} MiB (high-water {:.1} MiB), after {:.1} MiB: {:.3} MiB per call, {:.1} MiB not returned",
        cpu_per_call,
        cpu_per_call * n as f64,
        rss_before as f64 / 1024.0,
        rss_peak as f64 / 1024.0,
        hwm as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        rss_peak.saturating_sub(rss_before) as f64 / 1024.0 / n as f64,
        rss_after.saturating_sub(rss_before) as f64 / 1024.0
    );
    println!(
        "  kefu CPU over whole calls (first INVITE to last hang-up): {:.3} s per call, {:.4} % of a core per call over its {hold:?}",
        cpu_run / n as f64,
        cpu_run * 100.0 / n as f64 / hold.as_secs_f64()
    );
    let logs = server.logs();
    let lines_with = |needle: &str| logs.iter().filter(|l| l.contains(needle)).count();
    let recognised = lines_with("caller said");
    let refused = lines_with("speech recognition refused");
    if voice == Voice::Speech {
        println!(
            "  utterances recognised {recognised} of {n} callers who spoke; refused as busy {refused} (log lines)"
        );
    }
    if let Some((pool, _)) = &pool {
        let counted = |node: &Server, family: &str| -> Vec<String> {
            let (ok, token, _) = node.kefu(&["tokens", "create", "scrape", "--role", "auditor"]);
            let (_, body) = if ok {
                node.get_metrics(token.trim())
            } else {
                Default::default()
            };
            body.lines()
                .filter(|l| l.starts_with(&format!("kefu_{family}_total{{")))
                .map(str::to_string)
                .collect()
        };
        println!(
            "  through the pool: media node {:?}; pool {:?}; pool CPU {:.1} s",
            counted(&server, "speech_remote"),
            counted(pool, "speech_served"),
            common::cpu_time(pool.pid()).as_secs_f64()
        );
    }
    println!(
        "  RSS 41 s after the calls (past the SIP transactions' 32 s): {:.1} MiB, {:.1} MiB not returned",
        rss_settled as f64 / 1024.0,
        rss_settled.saturating_sub(rss_before) as f64 / 1024.0
    );
    let mut walked: Vec<_> = walked.into_iter().collect();
    walked.sort();
    println!("  call records: {walked:?}");
    if smoke {
        assert_eq!(completed, n, "calls failed in the smoke run");
        assert!(received > 0 && phones.iter().all(|p| p.frames > 0));
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let dir = tempfile::tempdir().expect("tempdir");
    let sound = Sound::new(dir.path());
    let voices: Vec<Voice> = env_or("KEFU_LOAD_VOICE", "silence,noise,speech")
        .split(',')
        .filter_map(Voice::parse)
        .collect();
    if !bench {
        // `cargo test --all-targets` runs benches once: a smoke run of the harness
        // (3 calls of each kind, 10 s each), not a measurement.
        for &voice in &voices {
            run(3, Duration::from_secs(10), 10, voice, &sound, true);
        }
        return;
    }
    let calls = env_or("KEFU_LOAD_CALLS", "1000");
    let hold = Duration::from_secs(env_or("KEFU_LOAD_HOLD", "30").parse().unwrap_or(30));
    let rate: usize = env_or("KEFU_LOAD_RATE", "200").parse().unwrap_or(200);
    for n in calls
        .split(',')
        .filter_map(|s| s.trim().parse::<usize>().ok())
    {
        for &voice in &voices {
            run(
                n.clamp(1, 5000),
                hold.clamp(Duration::from_secs(5), Duration::from_secs(600)),
                rate.max(1),
                voice,
                &sound,
                false,
            );
        }
    }
}
