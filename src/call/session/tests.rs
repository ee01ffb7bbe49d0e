//! The session in virtual time: no sockets, no models, no sleeps.

use super::*;
use crate::dialplan::{AudioRoot, load_text};
use crate::media::prompt::PromptCache;
use std::collections::BTreeMap;
use std::sync::Mutex;

const PLAN: &str = r#"
[dialplan]
name = "session unit"
numbers = ["1"]
language = "en"
start = "ask"

[nodes.ask]
type = "listen"
prompt = "en/main-menu.wav"
timeout = "60s"
max_failures = 3
on_failure = "bye"

[nodes.ask.options]
1 = "bye"

[nodes.bye]
type = "hangup"
"#;

/// Ears that count the frames they were fed.
struct Counting(Arc<Mutex<usize>>);

impl Ears for Counting {
    fn restart(&mut self, _language: &str) {}
    fn push(&mut self, pcm: &[i16], _out: &mut Vec<Noticed>) {
        *self.0.lock().unwrap() += pcm.len() / FRAME_SAMPLES;
    }
    fn end_turn(&mut self) {}
}

fn session(frames: Arc<Mutex<usize>>, t0: Moment) -> Session {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let plan = load_text(
        std::path::Path::new("unit.toml"),
        PLAN,
        &AudioRoot(root.join("audio")),
        &PromptCache::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
                 a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
    let config = Config {
        negotiated: crate::media::sdp::negotiate(offer.as_bytes()).unwrap(),
        dtmf: DtmfMode::Auto,
        rtp_timeout: Duration::from_secs(30),
        local_rtp: "127.0.0.1:20000".parse().unwrap(),
        peer: "127.0.0.1".parse().unwrap(),
        session_id: 7,
        sdp_version: 1,
        caller: "10086".into(),
        language: "en".into(),
    };
    let interpreter = Interpreter::new(plan, BTreeMap::new(), t0);
    let make: MakeEars =
        Box::new(move |_: &str| -> Box<dyn Ears> { Box::new(Counting(frames.clone())) });
    Session::new(config, interpreter, Some(make), t0.mono)
}

fn actions(s: &mut Session) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 9]);
    p.extend_from_slice(&[0xff; 160]);
    p
}

#[test]
fn a_quiet_caller_is_heard_as_silence_for_the_time_that_passed() {
    let frames = Arc::new(Mutex::new(0));
    let t0 = Moment::now();
    let mut s = session(frames.clone(), t0);
    s.handle(Event::Start, t0);
    let first = actions(&mut s);
    assert!(matches!(first[0], Action::Listen { .. }), "{first:?}");
    // Ticks at any rate: silence for the time since the caller was last heard.
    for ms in [50, 120, 130, 400] {
        s.handle(Event::Tick, t0.after(Duration::from_millis(ms)));
    }
    assert_eq!(*frames.lock().unwrap(), 400 / 20);
    // Media from the caller: no silence is made up for it.
    let from = "127.0.0.1:40000".parse().unwrap();
    let at = t0.after(Duration::from_millis(420));
    s.handle(
        Event::Rtp {
            packet: &rtp(1),
            from,
            at: at.mono,
        },
        at,
    );
    s.handle(Event::Tick, t0.after(Duration::from_millis(460)));
    assert_eq!(*frames.lock().unwrap(), 400 / 20 + 1);
}

#[test]
fn media_follow_the_source_and_a_held_caller_is_not_timed_out() {
    let t0 = Moment::now();
    let mut s = session(Arc::default(), t0);
    s.handle(Event::Start, t0);
    actions(&mut s);
    // Symmetric RTP: kefu answers where the caller really sends from.
    let nat: SocketAddr = "127.0.0.1:41234".parse().unwrap();
    for seq in 1..=5 {
        s.handle(
            Event::Rtp {
                packet: &rtp(seq),
                from: nat,
                at: t0.mono,
            },
            t0,
        );
    }
    assert!(
        actions(&mut s)
            .iter()
            .any(|a| matches!(a, Action::Remote(r) if *r == nat))
    );
    // On hold (inactive: the phone sends nothing): 40 s without media end nothing.
    let hold = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                m=audio 40000 RTP/AVP 0\r\na=inactive\r\n";
    let decision = s.reoffer(hold.as_bytes(), t0);
    assert!(matches!(decision, Reoffer::Accepted { .. }));
    let media = actions(&mut s);
    assert!(
        matches!(&media[..], [Action::Media(n)] if n.direction == Direction::Inactive),
        "{media:?}"
    );
    let later = t0.after(Duration::from_secs(40));
    s.handle(Event::Tick, later);
    assert!(!actions(&mut s).iter().any(|a| matches!(a, Action::End(_))));
    // Resumed, and silent for longer than the time-out: gone.
    let resume = hold.replace("inactive", "sendrecv");
    s.reoffer(resume.as_bytes(), later);
    s.handle(Event::Tick, later.after(Duration::from_secs(31)));
    assert!(
        actions(&mut s)
            .iter()
            .any(|a| matches!(a, Action::End(EndReason::RtpTimeout)))
    );
    // Over: nothing more happens.
    s.handle(Event::InfoKey('1'), later.after(Duration::from_secs(32)));
    assert!(actions(&mut s).is_empty());
}

#[test]
fn an_answer_keeps_rendering_while_its_sentences_play() {
    let t0 = Moment::now();
    let mut s = session(Arc::default(), t0);
    s.handle(Event::Start, t0);
    s.handle(Event::PlayoutEnded, t0);
    actions(&mut s);
    // Recognition refused: the plan says so in words, rendered sentence by sentence.
    s.handle(Event::RecognitionRefused, t0);
    let spoken = actions(&mut s);
    assert!(
        spoken.iter().any(|a| matches!(a, Action::Speak { .. })),
        "{spoken:?}"
    );
    let sentence = || Arc::new(Prompt::from_samples("s.wav".into(), vec![0; 160]));
    for _ in 0..2 {
        s.handle(Event::Sentence(sentence()), t0);
        // Nothing that would replace the answer (and drop its rendering).
        let after = actions(&mut s);
        assert!(
            matches!(&after[..], [Action::Append(_)]),
            "a sentence must only be appended: {after:?}"
        );
    }
    // The audio ran out before the last sentence came: not the answer's end yet.
    s.handle(Event::PlayoutEnded, t0);
    assert!(matches!(s.answer, Answer::Rendering { starved: true, .. }));
    s.handle(Event::AnswerRendered, t0);
    assert_eq!(s.answer, Answer::None);
}

/// Ears that notice what the test queued, at the next frame they are fed.
struct Scripted(Arc<Mutex<Vec<Noticed>>>);

impl Ears for Scripted {
    fn restart(&mut self, _language: &str) {}
    fn push(&mut self, _pcm: &[i16], out: &mut Vec<Noticed>) {
        out.append(&mut self.0.lock().unwrap());
    }
    fn end_turn(&mut self) {}
}

#[test]
fn what_a_caller_says_while_recognition_runs_is_their_next_turn() {
    let t0 = Moment::now();
    let mut s = session(Arc::default(), t0);
    let queued: Arc<Mutex<Vec<Noticed>>> = Arc::default();
    let ears = queued.clone();
    s.make_ears = Some(Box::new(move |_: &str| -> Box<dyn Ears> {
        Box::new(Scripted(ears.clone()))
    }));
    s.handle(Event::Start, t0);
    actions(&mut s);
    let from = "127.0.0.1:40000".parse().unwrap();
    let mut seq = 0;
    let mut say = |s: &mut Session, audio: Vec<f32>, ms: u64| {
        queued.lock().unwrap().push(Noticed::Utterance(audio));
        seq += 1;
        let at = t0.after(Duration::from_millis(ms));
        s.handle(
            Event::Rtp {
                packet: &rtp(seq),
                from,
                at: at.mono,
            },
            at,
        );
        s.handle(Event::Tick, t0.after(Duration::from_millis(ms + 40)));
        actions(s)
    };
    let recognise = |a: &[Action]| {
        a.iter()
            .filter_map(|a| match a {
                Action::Recognise { audio, draft, .. } => Some((audio[0], *draft)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let first = say(&mut s, vec![0.1; 16_000], 1000);
    assert_eq!(recognise(&first), [(0.1, false)], "{first:?}");
    // Two more while the first is recognised: the latest waits its turn.
    assert!(recognise(&say(&mut s, vec![0.2; 16_000], 2000)).is_empty());
    assert!(recognise(&say(&mut s, vec![0.3; 16_000], 3000)).is_empty());
    let transcript = crate::speech::Transcript {
        text: "hello".into(),
        language: "en".into(),
        confidence: 0.9,
        no_speech: 0.0,
        audio_ms: 1000,
        decode_ms: 300,
    };
    s.handle(
        Event::Heard(Ok(transcript)),
        t0.after(Duration::from_millis(3500)),
    );
    let next = actions(&mut s);
    assert_eq!(recognise(&next), [(0.3, false)], "{next:?}");
    assert_eq!(s.utterances, ["hello"]);
}
