//! Speech engines over the network: a client for the OpenAI-compatible
//! `/v1/audio/transcriptions` and `/v1/audio/speech` endpoints that many engines
//! serve (vLLM, faster-whisper servers, Mandarin engines, another kefu), so media
//! nodes can share a pool of recognisers on GPUs or big CPUs. Each request has a
//! deadline; the callers fall back to the local models when a service fails.
//!
//! The wire format is OpenAI's: a multipart upload (`file`, `model`, `language`,
//! `response_format=json`) answered with `{"text": …}`, and a JSON request
//! (`model`, `input`, `voice`, `response_format=wav`) answered with the audio.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::asr::{Language, Transcript};

/// The configured services by name.
pub type Services = std::collections::HashMap<String, Arc<Service>>;

/// A remote speech service, as kefu.toml's `[[speech_service]]` names it.
#[derive(Clone, Debug)]
pub struct Settings {
    pub name: String,
    /// The API's base, up to and including `/v1` ("http://10.0.0.5:8000/v1").
    pub url: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<String>,
    /// The longest a request may take before the local model is used instead.
    pub timeout: Duration,
    /// The `model` sent with transcriptions ("whisper-1" unless set).
    pub transcription_model: String,
    /// The `model` sent with speech requests ("tts-1" unless set).
    pub speech_model: String,
}

/// Why a remote request gave nothing.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("speech service {service}: no answer within {timeout:?}")]
    Timeout { service: String, timeout: Duration },
    #[error("speech service {service}: {reason}")]
    Failed { service: String, reason: String },
    #[error("speech service {service} is busy (503)")]
    Busy { service: String },
}

impl RemoteError {
    /// The metric's outcome label.
    pub fn outcome(&self) -> &'static str {
        match self {
            RemoteError::Timeout { .. } => "timeout",
            RemoteError::Failed { .. } => "failed",
            RemoteError::Busy { .. } => "busy",
        }
    }
}

/// One remote service: its settings and a connection pool.
#[derive(Debug)]
pub struct Service {
    settings: Settings,
    http: reqwest::Client,
    /// The runtime that runs requests made from blocking threads (synthesis).
    runtime: Option<tokio::runtime::Handle>,
    /// After a time-out, a connection failure or a 5xx, the service is not asked
    /// again until then: the local model answers at once instead of every
    /// utterance and sentence waiting for the deadline first.
    resting_until: std::sync::Mutex<Option<Instant>>,
}

/// How long a failed service rests before it is asked again.
pub const REST: Duration = Duration::from_secs(10);

/// Marks a draft's transcription request (kefu's own pools read it).
pub const DRAFT_HEADER: &str = "X-Kefu-Draft";

/// The longest error text kept from a service's answer (it goes to the log).
const ERROR_TEXT: usize = 200;

impl Service {
    /// A client for `settings`; made inside the async runtime, which it then uses
    /// for requests from blocking threads.
    pub fn new(settings: Settings) -> anyhow::Result<Arc<Self>> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()
            .map_err(|e| anyhow::anyhow!("speech service {}: {e}", settings.name))?;
        Ok(Arc::new(Self {
            settings,
            http,
            runtime: tokio::runtime::Handle::try_current().ok(),
            resting_until: std::sync::Mutex::new(None),
        }))
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}/{path}", self.settings.url.trim_end_matches('/'))
    }

    fn timed_out(&self) -> RemoteError {
        RemoteError::Timeout {
            service: self.settings.name.clone(),
            timeout: self.settings.timeout,
        }
    }

    fn failed(&self, reason: impl std::fmt::Display) -> RemoteError {
        RemoteError::Failed {
            service: self.settings.name.clone(),
            reason: reason.to_string(),
        }
    }

    /// Sends a request, with the key, and reads the whole answer within the
    /// deadline; a non-2xx answer is an error carrying the start of its text.
    /// `draft`: a 503 is the pool having no spare core, not a failure to rest on.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        draft: bool,
    ) -> Result<bytes::Bytes, RemoteError> {
        if let Some(until) = *crate::lock(&self.resting_until)
            && Instant::now() < until
        {
            return Err(self.failed("resting after a failure"));
        }
        let result = self.exchange(request).await;
        if let Err((error, rest)) = &result
            && !(draft && matches!(error, RemoteError::Busy { .. }))
        {
            if *rest {
                *crate::lock(&self.resting_until) = Some(Instant::now() + REST);
            }
            tracing::debug!(error = %error, rest, "speech service request failed");
        }
        result.map_err(|(e, _)| e)
    }

    /// One request; an error says whether the service should rest.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<bytes::Bytes, (RemoteError, bool)> {
        let request = match &self.settings.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        };
        // The client's own timeout covers the whole exchange, body included.
        let exchange = async {
            let answer = request.send().await?;
            let status = answer.status();
            let body = answer.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        };
        let (status, body) = match exchange.await {
            Err(e) if e.is_timeout() => return Err((self.timed_out(), true)),
            // Without the URL, which may carry credentials.
            Err(e) => return Err((self.failed(e.without_url()), true)),
            Ok(answer) => answer,
        };
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            let busy = RemoteError::Busy {
                service: self.settings.name.clone(),
            };
            return Err((busy, true));
        }
        if !status.is_success() {
            let text: String = String::from_utf8_lossy(&body)
                .chars()
                .take(ERROR_TEXT)
                .collect();
            let error = self.failed(format!("HTTP {status}: {}", text.trim()));
            return Err((error, status.is_server_error()));
        }
        Ok(body)
    }

    /// Recognises 16 kHz mono audio; `language` is sent unless `Auto`, a `hint`
    /// (words the caller is likely to use) as the API's `prompt`. A
    /// `draft` (the words up to a pause) says so in `X-Kefu-Draft`: a kefu pool
    /// decodes it only on spare cores and answers 503 at once otherwise, which
    /// does not rest the service (other engines ignore the header).
    pub async fn transcribe(
        &self,
        audio_16k: &[f32],
        language: Language,
        hint: Option<&str>,
        draft: bool,
    ) -> Result<Transcript, RemoteError> {
        let started = Instant::now();
        let wav = crate::media::wav::encode_pcm16(audio_16k, 16_000)
            .map_err(|e| self.failed(format!("cannot encode the utterance: {e}")))?;
        let file = reqwest::multipart::Part::bytes(wav)
            .file_name("utterance.wav")
            .mime_str("audio/wav")
            .map_err(|e| self.failed(e))?;
        let mut form = reqwest::multipart::Form::new()
            .part("file", file)
            .text("model", self.settings.transcription_model.clone())
            .text("response_format", "json");
        if language != Language::Auto {
            form = form.text("language", language.code());
        }
        if let Some(hint) = hint.filter(|h| !h.is_empty()) {
            form = form.text("prompt", hint.to_string());
        }
        let mut request = self
            .http
            .post(self.endpoint("audio/transcriptions"))
            .multipart(form);
        if draft {
            request = request.header(DRAFT_HEADER, "1");
        }
        let body = self.send(request, draft).await?;
        #[derive(serde::Deserialize)]
        struct Answer {
            text: String,
            language: Option<String>,
        }
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| self.failed(format!("not a transcription: {e}")))?;
        let audio_ms = audio_16k.len() as u64 / 16;
        Ok(Transcript {
            text: answer.text.trim().to_string(),
            language: answer
                .language
                .map(|l| normalise_language(&l))
                .unwrap_or_else(|| language.code().to_string()),
            // The API gives no confidence; a service's text is taken as heard.
            confidence: 1.0,
            no_speech: 0.0,
            audio_ms,
            decode_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Speaks `text` with the service's `voice`; mono samples with their rate.
    pub async fn speak(&self, voice: &str, text: &str) -> Result<(Vec<f32>, u32), RemoteError> {
        let request = self
            .http
            .post(self.endpoint("audio/speech"))
            .json(&serde_json::json!({
                "model": self.settings.speech_model,
                "input": text,
                "voice": voice,
                "response_format": "wav",
            }));
        let body = self.send(request, false).await?;
        crate::media::wav::decode_mono(&body)
            .map_err(|e| self.failed(format!("not WAV audio: {e}")))
    }

    /// [`Self::speak`] from a blocking thread (speech is rendered on those): the
    /// request runs on the async runtime and this thread waits for its answer.
    pub fn speak_blocking(
        self: &Arc<Self>,
        voice: &str,
        text: &str,
    ) -> Result<(Vec<f32>, u32), RemoteError> {
        let Some(runtime) = &self.runtime else {
            return Err(self.failed("no async runtime to make the request on"));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (service, voice, text) = (self.clone(), voice.to_string(), text.to_string());
        runtime.spawn(async move {
            let _ = tx.send(service.speak(&voice, &text).await);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(self.failed("the request was dropped")))
    }
}

/// Whisper servers answer `verbose_json` languages by name ("english"); kefu's
/// transcripts carry codes.
fn normalise_language(l: &str) -> String {
    match l.to_ascii_lowercase().as_str() {
        "english" => "en".into(),
        "chinese" | "mandarin" => "zh".into(),
        other => other.to_string(),
    }
}

/// Counts one remote request's outcome.
pub fn count(kind: &'static str, outcome: &'static str) {
    crate::metrics::Metrics::speech(&crate::metrics::metrics().speech_remote, kind, outcome);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_by_name_become_codes() {
        assert_eq!(normalise_language("English"), "en");
        assert_eq!(normalise_language("chinese"), "zh");
        assert_eq!(normalise_language("zh"), "zh");
    }
}
