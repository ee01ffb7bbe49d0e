//! Bounded fuzzing of every parser that reads network or customer input: SIP
//! datagrams (the guard and its canonical form), SIP over TCP (the framer), SDP offers, RTP and RFC 4733
//! payloads, dialplans, knowledge-base files and CSV imports. Each target must
//! return an answer or an error for any input, never panic.
//!
//! bolero runs here as an ordinary test: a fixed number of generated inputs per
//! target, most of them real messages and files (the RFC 4475 corpus, the demo
//! dialplan and knowledge base) with bytes spliced in, so the run is bounded and CI
//! executes it with `cargo test`. `cargo bolero test fuzz_sip_datagrams` (cargo-bolero,
//! libFuzzer) runs the same targets open-ended when there is time.

mod common;

use std::path::{Path, PathBuf};

use bolero::check;

/// Runs per target: enough to reach past the first parse errors, small enough
/// for a debug build on two cores (about 10 s in all). The slow targets (a whole
/// dialplan or knowledge-base file per run) take a tenth.
const RUNS: usize = 40_000;

/// `base` with `insert` spliced in at `at` (wrapped to its length), `cut` bytes after
/// it removed: a mutation that keeps most of a real message intact.
fn splice(base: &[u8], at: u16, cut: u8, insert: &[u8]) -> Vec<u8> {
    let at = if base.is_empty() {
        0
    } else {
        usize::from(at) % base.len()
    };
    let end = (at + usize::from(cut % 16)).min(base.len());
    let mut out = Vec::with_capacity(base.len() + insert.len());
    out.extend_from_slice(&base[..at]);
    out.extend_from_slice(insert);
    out.extend_from_slice(&base[end..]);
    out
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = common::repo().join("tests/fixtures/rfc4475");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "dat"))
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn fuzz_sip_datagrams() {
    use kefu::channel::sip::{guard, syntax};
    let corpus = corpus();
    check!()
        .with_type::<(u8, u16, u8, Vec<u8>)>()
        .with_iterations(RUNS)
        .for_each(|(which, at, cut, insert)| {
            let base = &corpus[usize::from(*which) % corpus.len()];
            for datagram in [splice(base, *at, *cut, insert), insert.clone()] {
                let canonical = syntax::canonical(&datagram).unwrap_or(datagram);
                let _ = guard::inspect(&canonical);
                if let Ok(text) = std::str::from_utf8(&canonical) {
                    let first = text.split("\r\n").next().unwrap_or_default();
                    let _ = syntax::check_start_line(first);
                    let _ = syntax::check_headers("INVITE", text);
                    let _ = syntax::check_acceptable("INVITE", text, true);
                }
            }
        });
}

/// SIP over TCP: a stream of corpus messages with bytes spliced in, fed to the
/// framer in pieces of any size; every message it cuts goes to the guard.
#[test]
fn fuzz_sip_streams() {
    use kefu::channel::sip::{guard, stream};
    let corpus = corpus();
    let t = std::time::Instant::now();
    check!()
        .with_type::<(u8, u8, u16, u8, Vec<u8>)>()
        .with_iterations(RUNS)
        .for_each(|(which, piece, at, cut, insert)| {
            let mut bytes = corpus[usize::from(*which) % corpus.len()].clone();
            bytes.extend_from_slice(&corpus[usize::from(*which / 2) % corpus.len()]);
            let bytes = splice(&bytes, *at, *cut, insert);
            let mut framer = stream::Framer::default();
            for chunk in bytes.chunks(usize::from(*piece).max(1)) {
                framer.push(chunk, t);
                while let Some(frame) = framer.next(t) {
                    match frame {
                        stream::Frame::Message(m) => {
                            assert!(m.len() <= stream::MAX_MESSAGE);
                            let _ = guard::inspect_message(&m);
                        }
                        stream::Frame::Broken { .. } => return,
                        stream::Frame::Ping => {}
                    }
                }
            }
        });
}

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
    m=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
    a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\na=ptime:20\r\n";

#[test]
fn fuzz_sdp_offers() {
    use kefu::media::sdp;
    check!()
        .with_type::<(u16, u8, Vec<u8>)>()
        .with_iterations(RUNS)
        .for_each(|(at, cut, insert)| {
            for offer in [splice(OFFER.as_bytes(), *at, *cut, insert), insert.clone()] {
                if let Ok(n) = sdp::negotiate(&offer) {
                    let _ = sdp::check_target(n.remote, "192.0.2.9".parse().unwrap());
                    let _ = sdp::answer("127.0.0.1:20000".parse().unwrap(), &n, 1, 1);
                }
            }
        });
}

#[test]
fn fuzz_rtp_packets() {
    use kefu::channel::rtp::latch::Latch;
    use kefu::channel::rtp::receiver::RtpReceiver;
    use kefu::media::dtmf::rfc4733::TelephoneEvent;
    let start = std::time::Instant::now();
    check!()
        .with_type::<Vec<(u8, u16, u32, u32, Vec<u8>)>>()
        .with_iterations(RUNS)
        .for_each(|packets| {
            let mut receiver = RtpReceiver::default();
            let mut latch = Latch::new("192.0.2.1:4000".parse().unwrap());
            for (i, (source, seq, ssrc, ts, payload)) in packets.iter().enumerate() {
                let from = std::net::SocketAddr::from(([192, 0, 2, source % 3], 4000));
                if latch.accept(from, *seq) {
                    let _ = receiver.receive(*ssrc, *seq, *ts, i as u64 * 160, start);
                }
                if let Ok(r) = rtp_rs::RtpReader::new(payload) {
                    let _ = TelephoneEvent::parse(r.payload());
                }
                let _ = TelephoneEvent::parse(payload);
            }
            let _ = (receiver.lost(), receiver.jitter(), receiver.expected());
        });
}

fn mutated_text(base: &str, at: u16, cut: u8, insert: &[u8]) -> String {
    String::from_utf8_lossy(&splice(base.as_bytes(), at, cut, insert)).into_owned()
}

#[test]
fn fuzz_dialplans() {
    use kefu::dialplan::{AudioRoot, load_text};
    use kefu::media::prompt::PromptCache;
    let repo = common::repo();
    let base = std::fs::read_to_string(repo.join("tests/fixtures/dtmf/demo-en.toml")).unwrap();
    let audio = AudioRoot(repo.join("audio"));
    // Loading reads the cache only; a panic mid-load is what the test looks for.
    let prompts = std::panic::AssertUnwindSafe(PromptCache::default());
    check!()
        .with_type::<(u16, u8, Vec<u8>)>()
        .with_iterations(RUNS / 10)
        .for_each(|(at, cut, insert)| {
            let text = mutated_text(&base, *at, *cut, insert);
            let prompts: &PromptCache = &prompts;
            if let Err(e) = load_text(Path::new("fuzz.toml"), &text, &audio, prompts) {
                // Every error says where: file:line:col.
                assert!(!e.diagnostics.is_empty());
            }
        });
}

#[test]
fn fuzz_knowledge_bases() {
    use kefu::dialogue::kb::{import, load_files};
    let repo = common::repo();
    let base = std::fs::read_to_string(repo.join("dialplans/kb/stores.toml")).unwrap();
    let header = std::fs::read_to_string(repo.join("dialplans/kb/00-kb.toml")).unwrap();
    let sheet = "id,问题,答案,Question (EN),answer_en\nhours,你们几点关门？|周末开吗,上午9点到晚上9点,\"When do you close?\",\"9am, to 9pm\"\n";
    let workbook = std::fs::read(repo.join("tests/fixtures/kb/sheets/telecom.xlsx")).unwrap();
    check!()
        .with_type::<(u16, u8, Vec<u8>)>()
        .with_iterations(RUNS / 20)
        .for_each(|(at, cut, insert)| {
            let files = [
                (PathBuf::from("00-kb.toml"), header.clone()),
                (
                    PathBuf::from("stores.toml"),
                    mutated_text(&base, *at, *cut, insert),
                ),
            ];
            let _ = load_files(&files);
            let _ = import::import(
                Path::new("fuzz.csv"),
                &splice(sheet.as_bytes(), *at, *cut, insert),
            );
            let _ = import::import(
                Path::new("fuzz.xlsx"),
                &splice(&workbook, *at, *cut, insert),
            );
        });
}
