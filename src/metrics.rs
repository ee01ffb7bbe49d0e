//! Operational metrics in the Prometheus text format (`GET /metrics`): calls, RTP,
//! speech recognition and synthesis, dialogue matching, HTTP answers and store
//! commits. One process-wide set (`metrics()`), updated with atomic increments
//! where things happen; the `prometheus-client` crate keeps and encodes them.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// Speech over the network: which API ("transcription", "speech") and what came of it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SpeechLabel {
    pub kind: &'static str,
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub calls_started: Counter,
    pub calls_active: Gauge,
    pub calls_refused: Counter,
    pub sip_refused: Counter,
    pub rtp_in: Counter,
    pub rtp_refused: Counter,
    pub rtp_out: Counter,
    pub rtp_lost: Counter,
    pub bridged_active: Gauge,
    pub webrtc_calls: Family<OutcomeLabel, Counter>,
    pub webrtc_active: Gauge,
    pub asr_requests: Family<OutcomeLabel, Counter>,
    pub asr_decode_seconds: Histogram,
    pub asr_queue: Gauge,
    pub vad_batch: Histogram,
    pub tts_cache: Family<OutcomeLabel, Counter>,
    /// Requests kefu made of remote speech services.
    pub speech_remote: Family<SpeechLabel, Counter>,
    /// Requests kefu's own speech API answered.
    pub speech_served: Family<SpeechLabel, Counter>,
    pub match_seconds: Histogram,
    pub semantic: Family<OutcomeLabel, Counter>,
    pub http_responses: Family<StatusLabel, Counter>,
    pub db_commit_seconds: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn seconds() -> Histogram {
    // 100 µs to about 6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("kefu");
        let m = Self {
            calls_started: Counter::default(),
            calls_active: Gauge::default(),
            calls_refused: Counter::default(),
            sip_refused: Counter::default(),
            rtp_in: Counter::default(),
            rtp_refused: Counter::default(),
            rtp_out: Counter::default(),
            rtp_lost: Counter::default(),
            bridged_active: Gauge::default(),
            webrtc_calls: Family::default(),
            webrtc_active: Gauge::default(),
            asr_requests: Family::default(),
            speech_remote: Family::default(),
            speech_served: Family::default(),
            asr_decode_seconds: seconds(),
            asr_queue: Gauge::default(),
            // 1 to 512 chunks.
            vad_batch: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            tts_cache: Family::default(),
            match_seconds: seconds(),
            semantic: Family::default(),
            http_responses: Family::default(),
            db_commit_seconds: seconds(),
            registry: Registry::default(),
        };
        registry.register("calls_started", "Calls answered", m.calls_started.clone());
        registry.register("calls_active", "Calls in progress", m.calls_active.clone());
        registry.register(
            "calls_refused",
            "INVITEs refused: 503 (call limit, draining) or 403 (not from a trunk)",
            m.calls_refused.clone(),
        );
        registry.register(
            "sip_datagrams_refused",
            "SIP datagrams dropped unread: over their source's budget (not a trunk)",
            m.sip_refused.clone(),
        );
        registry.register(
            "rtp_packets_in",
            "RTP packets received from callers and agents",
            m.rtp_in.clone(),
        );
        registry.register(
            "rtp_packets_refused",
            "RTP packets dropped: not from the source a call's media is taken from",
            m.rtp_refused.clone(),
        );
        registry.register("rtp_packets_out", "RTP packets sent", m.rtp_out.clone());
        registry.register(
            "rtp_packets_lost",
            "RTP packets callers' streams lost (counted at the end of each call)",
            m.rtp_lost.clone(),
        );
        registry.register(
            "bridged_calls_active",
            "Calls bridged to an agent or a transfer target",
            m.bridged_active.clone(),
        );
        registry.register(
            "webrtc_calls",
            "Browser calls answered, by outcome (connected, not-connected)",
            m.webrtc_calls.clone(),
        );
        registry.register(
            "webrtc_peers_active",
            "Browsers' peer connections open (connecting or on a call)",
            m.webrtc_active.clone(),
        );
        registry.register(
            "asr_requests",
            "Utterances given to speech recognition, by outcome",
            m.asr_requests.clone(),
        );
        registry.register(
            "asr_decode_seconds",
            "Speech recognition time per utterance",
            m.asr_decode_seconds.clone(),
        );
        registry.register(
            "asr_queue",
            "Utterances waiting for a recogniser",
            m.asr_queue.clone(),
        );
        registry.register(
            "vad_batch_chunks",
            "Calls' 32 ms chunks per voice-detector run (one run serves every call with a chunk waiting)",
            m.vad_batch.clone(),
        );
        registry.register(
            "tts_cache",
            "Sentences asked of speech synthesis, by cache outcome (memory, disk, rendered)",
            m.tts_cache.clone(),
        );
        m.register_speech(&mut registry);
        registry.register(
            "semantic_rerank",
            "Messages whose words were not conclusive, by what the re-ranker did: used (compared by meaning), busy (the model was busy: matched by words alone), failed",
            m.semantic.clone(),
        );
        registry.register(
            "dialogue_match_seconds",
            "Time to answer a customer's message (matching and the reply)",
            m.match_seconds.clone(),
        );
        registry.register(
            "http_responses",
            "HTTP answers by status code",
            m.http_responses.clone(),
        );
        registry.register(
            "store_commit_seconds",
            "Time to commit one batch of store writes",
            m.db_commit_seconds.clone(),
        );
        Self { registry, ..m }
    }

    /// Speech over the network, both ways.
    fn register_speech(&self, registry: &mut Registry) {
        registry.register(
            "speech_remote",
            "Requests to remote speech services, by kind (transcription, speech) and outcome (ok, failed, timeout; fallback: done by the local model instead)",
            self.speech_remote.clone(),
        );
        registry.register(
            "speech_served",
            "Requests to kefu's own speech API (/v1/audio/...), by kind and outcome (ok, busy, refused)",
            self.speech_served.clone(),
        );
    }

    /// The metrics in the Prometheus (OpenMetrics) text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }

    /// Counts one speech request over the network (`family`: `speech_remote`
    /// or `speech_served`).
    pub fn speech(
        family: &Family<SpeechLabel, Counter>,
        kind: &'static str,
        outcome: &'static str,
    ) {
        family.get_or_create(&SpeechLabel { kind, outcome }).inc();
    }

    pub fn observe(h: &Histogram, d: Duration) {
        h.observe(d.as_secs_f64());
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}
