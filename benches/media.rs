//! Hot paths of every call: G.711, the DTMF tone detector, RTP build/parse, the
//! bridge's packet relay.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kefu::channel::rtp::sender::RtpSender;
use kefu::media::dtmf::inband::{ToneDetector, synthesize};
use kefu::media::g711::Law;

fn g711(c: &mut Criterion) {
    let pcm: Vec<i16> = (0..160)
        .map(|i| ((i * 397) % 65536 - 32768) as i16)
        .collect();
    let mut g = c.benchmark_group("g711_frame_160");
    g.throughput(Throughput::Elements(160));
    for law in [Law::Pcmu, Law::Pcma] {
        let mut enc = [0u8; 160];
        g.bench_function(format!("{law:?}_encode"), |b| {
            b.iter(|| law.encode(black_box(&pcm), &mut enc))
        });
        let mut dec = [0i16; 160];
        g.bench_function(format!("{law:?}_decode"), |b| {
            b.iter(|| law.decode(black_box(&enc), &mut dec))
        });
    }
    g.finish();
}

fn goertzel(c: &mut Criterion) {
    let audio = synthesize('5', 1000, 3000.0);
    let mut g = c.benchmark_group("dtmf_inband");
    g.throughput(Throughput::Elements(audio.len() as u64));
    g.bench_function("detect_1s_of_audio", |b| {
        b.iter(|| {
            let mut d = ToneDetector::default();
            let mut n = 0;
            for frame in audio.chunks(160) {
                d.push(black_box(frame), |_| n += 1);
            }
            n
        })
    });
    g.finish();
}

fn rtp(c: &mut Criterion) {
    let payload = [0xFFu8; 160];
    let mut buf = [0u8; 200];
    let mut sender = RtpSender::new(1, 1, 1);
    let mut slot = 0u64;
    c.bench_function("rtp_build_packet", |b| {
        b.iter(|| {
            slot += 1;
            sender.build(0, slot, black_box(&payload), &mut buf)
        })
    });
    let n = RtpSender::new(1, 1, 1)
        .build(0, 7, &payload, &mut buf)
        .unwrap_or(0);
    let packet = buf[..n].to_vec();
    c.bench_function("rtp_parse_packet", |b| {
        b.iter(|| {
            let r = rtp_rs::RtpReader::new(black_box(&packet)).ok()?;
            Some((r.sequence_number(), r.timestamp(), r.payload().len()))
        })
    });
}

/// One bridged packet: header rewrite, with and without transcoding, and with the
/// audio decoded for a recording.
fn relay(c: &mut Criterion) {
    use kefu::media::relay::{LegMedia, Line, MAX_PAYLOAD, Relay};
    let leg = |law: Law, pt: u8| LegMedia {
        law,
        payload_type: pt,
        telephone_event: Some(101),
    };
    let payload: Vec<u8> = (0..160).map(|i| (i * 7) as u8).collect();
    let mut buf = [0u8; 200];
    let n = RtpSender::new(9, 1, 1)
        .build(0, 3, &payload, &mut buf)
        .unwrap_or(0);
    let packet = buf[..n].to_vec();
    let line = Line {
        ssrc: 1,
        seq: 1,
        timestamp: 1,
    };
    let mut out = vec![0u8; 12 + MAX_PAYLOAD];
    let mut g = c.benchmark_group("bridge_relay_packet");
    g.throughput(Throughput::Elements(1));
    for (name, to, record) in [
        ("pcmu_to_pcmu", leg(Law::Pcmu, 0), false),
        ("pcmu_to_pcma", leg(Law::Pcma, 8), false),
        ("pcmu_to_pcma_recorded", leg(Law::Pcma, 8), true),
    ] {
        let mut r = Relay::new(leg(Law::Pcmu, 0), to, line);
        let mut pcm = Vec::with_capacity(MAX_PAYLOAD);
        g.bench_function(name, |b| {
            b.iter(|| r.relay(black_box(&packet), &mut out, record.then_some(&mut pcm)))
        });
    }
    g.finish();
}

/// Silero VAD per 32 ms chunk, one ONNX run per chunk against one run for a
/// batch of calls' chunks (the shipped model; needs `deploy/setup.sh`).
fn vad(c: &mut Criterion) {
    use kefu::speech::vad::{INPUT, Item, VadModel};
    let models =
        kefu::speech::ModelDir(std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"));
    let (Ok(runtime), Ok(model)) = (models.onnxruntime(), models.silero_vad()) else {
        println!("vad: no models (run deploy/setup.sh); skipped");
        return;
    };
    let (Ok(()), Ok(model)) = (
        kefu::speech::models::init_onnx_runtime(&runtime),
        VadModel::load(&model),
    ) else {
        println!("vad: the model does not load; skipped");
        return;
    };
    // Speech-like input: a vowel-ish mix of tones.
    let mut input = [0.0f32; INPUT];
    for (i, x) in input.iter_mut().enumerate() {
        let t = i as f32 / 8000.0;
        *x = 0.2 * (t * 2.0 * std::f32::consts::PI * 220.0).sin()
            + 0.1 * (t * 2.0 * std::f32::consts::PI * 660.0).sin();
    }
    let item = Item {
        input,
        state: [0.0; 256],
        p: 0.0,
    };
    let mut g = c.benchmark_group("vad_chunks");
    for batch in [1usize, 8, 32, 128] {
        let mut items = vec![item.clone(); batch];
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("batch_{batch}"), |b| {
            b.iter(|| model.run_batch(black_box(&mut items)))
        });
    }
    g.finish();
}

/// The browser gateway per 20 ms frame: the call's µ-law to Opus (what kefu sends
/// a browser) and Opus back to µ-law (what a browser sends the call).
fn webrtc_gateway(c: &mut Criterion) {
    use kefu::channel::webrtc::gateway::{BrowserCodec, Offered, ToBrowser, ToCall};
    use webrtc::rtp::{header::Header, packet::Packet};
    let opus = BrowserCodec::Opus { payload_type: 111 };
    let speech: Vec<i16> = (0..160)
        .map(|i| ((i as f32 * 0.3).sin() * 6000.0 + (i as f32 * 0.071).sin() * 3000.0) as i16)
        .collect();
    let mut ulaw = vec![0u8; 160];
    kefu::media::g711::Law::Pcmu.encode(&speech, &mut ulaw);
    let packet = |seq: u16, pt: u8, payload: Vec<u8>| Packet {
        header: Header {
            version: 2,
            payload_type: pt,
            sequence_number: seq,
            timestamp: u32::from(seq) * 160,
            ssrc: 1,
            ..Header::default()
        },
        payload: payload.into(),
    };
    let mut to_browser = ToBrowser::new(opus).unwrap();
    let mut seq = 0u16;
    c.bench_function("webrtc_gateway_to_browser_opus_frame", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            to_browser.translate(&packet(seq, 0, ulaw.clone()))
        })
    });
    let encoded = to_browser
        .translate(&packet(0, 0, ulaw.clone()))
        .unwrap()
        .payload
        .to_vec();
    let mut to_call = ToCall::new(Offered {
        audio: vec![opus],
        events: vec![],
    });
    c.bench_function("webrtc_gateway_to_call_opus_frame", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            to_call.translate(&packet(seq, 111, encoded.clone()))
        })
    });
}

criterion_group!(benches, g711, goertzel, rtp, relay, vad, webrtc_gateway);
criterion_main!(benches);
