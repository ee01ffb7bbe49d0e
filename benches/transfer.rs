//! Warm transfer, measured on a running server over loopback (bounded in count and
//! time; nothing leaves 127.0.0.1):
//!
//! 1. From the caller's request for a person (key 0 at a menu, RFC 4733) to the
//!    agent's phone receiving kefu's INVITE, over 20 calls.
//! 2. Relay capacity: N calls bridged at once (caller PCMU, agent PCMA, so every
//!    packet is transcoded), both sides streaming 50 packets/s for 10 s; kefu's CPU
//!    time from /proc gives the CPU share per bridged call, hence bridged calls per
//!    core, and the packets received on each side show nothing was lost.
//!
//! Run: `cargo bench --bench transfer` (needs `deploy/setup.sh`). `KEFU_BRIDGES`
//! sets N (default 50). Figures go to benches/RESULTS.md.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::phone::{
    Phone, add_agent_with_phone, available, press, rtp, sdp_target, set_available,
};
use common::{RawUa, Server};

const PLANS: &str = r#"[dialplan]
name = "bench: menu"
numbers = ["500"]
language = "en"
start = "menu"

[nodes.menu]
type = "menu"
prompt = "en/main-menu.wav"
timeout = "20s"
on_failure = "bye"

[nodes.menu.options]
0 = "agent"

[nodes.agent]
type = "transfer"
queue = "bench"
next = "bye"

[nodes.bye]
type = "hangup"
"#;

const DIRECT: &str = r#"[dialplan]
name = "bench: straight to an agent"
numbers = ["501"]
language = "en"
start = "agent"

[nodes.agent]
type = "transfer"
queue = "bench"
next = "bye"

[nodes.bye]
type = "hangup"
"#;

fn bye(caller: &RawUa, ok: &str, n: u32) {
    caller.send(&caller.in_dialog(ok, "BYE", 2, &format!("z9hG4bKbye{n}")));
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Request for a person → the agent's INVITE, `calls` times.
fn request_to_invite(server: &Server, phone: &Phone, calls: u32) {
    let mut ms = Vec::new();
    for n in 0..calls {
        let caller = RawUa::new(server.sip);
        let ok = caller.answered_call(&format!("bench-req-{n}"), "500");
        let kefu_media = sdp_target(&ok);
        std::thread::sleep(Duration::from_millis(300));
        // The key is pressed on a thread of its own (its six packets take 100 ms)
        // while the phone waits: the time runs from the first event packet.
        let rtp = caller.rtp.try_clone().expect("socket");
        let t0 = Instant::now();
        let pressing = std::thread::spawn(move || {
            let mut seq = 1;
            press(&rtp, 101, kefu_media, 0, &mut seq);
        });
        let invite = phone.ringing(Duration::from_secs(10));
        ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        let _ = pressing.join();
        phone.respond(&invite, "486 Busy Here", "");
        bye(&caller, &ok, n);
        std::thread::sleep(Duration::from_millis(200));
    }
    let (p50, p95, max) = (
        percentile(&mut ms, 0.5),
        percentile(&mut ms, 0.95),
        percentile(&mut ms, 1.0),
    );
    println!(
        "request for a person (first RFC 4733 packet of key 0) → agent INVITE, {calls} calls: p50 {p50:.1} ms, p95 {p95:.1} ms, max {max:.1} ms"
    );
}

/// Both ends of one bridged call, as the load generator sees them.
struct Ends {
    caller: std::net::UdpSocket,
    to_kefu_from_caller: SocketAddr,
    phone: std::net::UdpSocket,
    to_kefu_from_phone: SocketAddr,
}

/// Streams 50 packets/s each way on every call in `calls` (calls join while it
/// runs, so the first ones keep their media flowing while the rest are set up),
/// counting what it sent and what came back out of kefu.
fn stream(
    calls: Arc<Mutex<Vec<Ends>>>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    got: Arc<AtomicU64>,
) {
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    let ulaw = [0x7eu8; 160];
    let alaw = [0x55u8; 160];
    let mut tick = 0u32;
    while !stop.load(Ordering::Relaxed) {
        for c in calls.lock().expect("calls").iter() {
            let p = rtp(0, tick as u16, tick * 160, false, &ulaw);
            if c.caller.send_to(&p, c.to_kefu_from_caller).is_ok() {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            let p = rtp(8, tick as u16, tick * 160, false, &alaw);
            if c.phone.send_to(&p, c.to_kefu_from_phone).is_ok() {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            for s in [&c.caller, &c.phone] {
                while s.recv_from(&mut buf).is_ok() {
                    got.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        tick += 1;
        let next = start + Duration::from_millis(20 * u64::from(tick));
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

/// N calls bridged at once, both sides streaming; kefu's CPU per bridged call.
fn relay_capacity(server: &Server, phones: Vec<Phone>, window: Duration) {
    let n = phones.len();
    let mut idle = phones;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let (stop, sent, got) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let streamer = {
        let (calls, stop, sent, got) = (calls.clone(), stop.clone(), sent.clone(), got.clone());
        std::thread::spawn(move || stream(calls, stop, sent, got))
    };
    let mut keep = Vec::new();
    for i in 0..n {
        let caller = RawUa::new(server.sip);
        let ok = caller.answered_call(&format!("bench-bridge-{i}"), "501");
        let to_kefu_from_caller = sdp_target(&ok);
        // Whichever idle phone rings answers and takes the call at once.
        let deadline = Instant::now() + Duration::from_secs(10);
        let (k, invite) = 'ring: loop {
            assert!(Instant::now() < deadline, "no phone rang for call {i}");
            for (k, p) in idle.iter().enumerate() {
                if let Some(m) = p.ua.recv(Duration::from_millis(5))
                    && m.starts_with("INVITE ")
                {
                    break 'ring (k, m);
                }
            }
        };
        let phone = idle.swap_remove(k);
        phone.answer(&invite);
        let to_kefu_from_phone = sdp_target(&invite);
        let mut seq = 1;
        phone.press(to_kefu_from_phone, 1, &mut seq);
        let ends = Ends {
            caller: caller.rtp.try_clone().expect("socket"),
            to_kefu_from_caller,
            phone: phone.ua.rtp.try_clone().expect("socket"),
            to_kefu_from_phone,
        };
        for s in [&ends.caller, &ends.phone] {
            s.set_nonblocking(true).expect("nonblocking");
        }
        calls.lock().expect("calls").push(ends);
        keep.push((caller, phone));
    }
    // Every call bridged and streaming: measure a window.
    std::thread::sleep(Duration::from_secs(1));
    let pid = server.pid();
    let (start, cpu0) = (Instant::now(), common::cpu_time(pid));
    let (sent0, got0) = (sent.load(Ordering::Relaxed), got.load(Ordering::Relaxed));
    std::thread::sleep(window);
    let elapsed = start.elapsed().as_secs_f64();
    let used = (common::cpu_time(pid) - cpu0).as_secs_f64();
    let (sent, got) = (
        sent.load(Ordering::Relaxed) - sent0,
        got.load(Ordering::Relaxed) - got0,
    );
    stop.store(true, Ordering::Relaxed);
    let _ = streamer.join();
    let share = used / elapsed;
    let live = server
        .logs()
        .iter()
        .filter(|l| l.contains("caller and agent bridged"))
        .count()
        - server
            .logs()
            .iter()
            .filter(|l| l.contains("bridged call ended"))
            .count();
    println!(
        "{n} calls bridged ({live} still bridged at the end; PCMU caller ↔ PCMA agent, transcoded), {:.0} packets/s into kefu for {elapsed:.1} s: kefu CPU {:.1} % of one core, {:.3} % per bridged call → about {:.0} bridged calls per core; {got} of {sent} packets came out the other side",
        sent as f64 / elapsed,
        share * 100.0,
        share * 100.0 / n as f64,
        n as f64 / share.max(1e-9),
    );
    drop(keep);
}

fn main() {
    // Under `cargo test`: 2 bridged calls, 3 latency calls, 3 s, as a smoke run.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n: usize = if smoke {
        println!("transfer (smoke run at tiny sizes, not a measurement):");
        2
    } else {
        std::env::var("KEFU_BRIDGES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(50)
            .clamp(1, 200)
    };
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("menu.toml"), PLANS).expect("plan");
    std::fs::write(dir.path().join("direct.toml"), DIRECT).expect("plan");
    let server = Server::start_with(
        Some(dir.path()),
        &format!(
            "max_calls = {}\nrtp_ports = \"30000-31998\"\n[[queue]]\nname = \"bench\"\nring_timeout = \"30s\"\nmax_wait = \"5m\"\nwrap_up = \"1h\"\n",
            2 * n + 10
        ),
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut phones = Vec::new();
    for i in 0..=n {
        let ext = format!("{}", 4000 + i);
        add_agent_with_phone(&server, &format!("agent{i}"), &ext, "bench");
        phones.push(Phone::register(&server, &ext));
    }
    // The first agent alone takes the latency calls (passing each: busy), then
    // goes away; the others take the bridged calls.
    rt.block_on(available(&server, "agent0"));
    let first = phones.remove(0);
    request_to_invite(&server, &first, if smoke { 3 } else { 20 });
    rt.block_on(set_available(&server, "agent0", false));
    drop(first);
    for i in 1..=n {
        rt.block_on(available(&server, &format!("agent{i}")));
    }
    relay_capacity(
        &server,
        phones,
        Duration::from_secs(if smoke { 3 } else { 10 }),
    );
}
