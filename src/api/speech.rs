//! kefu's models as a speech service, on OpenAI's audio API, so a pool of CPU
//! machines can hear and speak for media nodes (their `[[speech_service]]`):
//!
//! - `POST /v1/audio/transcriptions`: a multipart upload (`file`: WAV in any
//!   rate and width; `language`: en or zh, else detected; `response_format`:
//!   json (default), verbose_json or text). `model`, `prompt` and `temperature`
//!   are accepted and ignored: this node's Whisper model answers.
//! - `POST /v1/audio/speech`: `{"input", "voice", "response_format"}` → audio.
//!   `voice` is one of kefu's voices (en_US-joe-medium, kokoro-zh, …);
//!   `response_format` is wav (8 kHz, the default here) or pcm (OpenAI's raw
//!   16-bit 24 kHz).
//!
//! Both need an integrator's (or admin's) token. What this node hears and says
//! is its own work: it never forwards to its own remote services (no loops).

use std::sync::Arc;

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Multipart, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, Ops};
use crate::auth::Permission::Speech;
use crate::http::routes::{Routes, Verb::*};
use crate::speech::{AsrError, Language, SpeechRuntime};

/// The engines behind the API.
pub struct Engines {
    /// Loaded when a plan listens or `serve_speech` is on.
    pub recognition: Option<Arc<SpeechRuntime>>,
    pub synthesis: Arc<crate::speech::tts::Speaker>,
}

/// OpenAI's limit on the text of one speech request.
const MAX_INPUT: usize = 4096;

pub fn routes(r: Routes<Arc<Ops>>) -> Routes<Arc<Ops>> {
    r.add(Post, "/v1/audio/transcriptions", Speech, transcriptions)
        .add(Post, "/v1/audio/speech", Speech, speech)
}

fn served(kind: &'static str, outcome: &'static str) {
    crate::metrics::Metrics::speech(&crate::metrics::metrics().speech_served, kind, outcome);
}

/// The upload's parts that matter.
#[derive(Default)]
struct Upload {
    file: Option<bytes::Bytes>,
    language: Option<String>,
    format: Option<String>,
    prompt: Option<String>,
}

/// The longest `prompt` taken (characters); the recogniser uses the first
/// [`crate::speech::asr::HINT_CHARS`] of it.
const PROMPT_CHARS: usize = 2000;

async fn read_upload(form: Result<Multipart, MultipartRejection>) -> Result<Upload, ApiError> {
    let mut form = form.map_err(|e| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("send multipart/form-data with a `file` part: {e}"),
        )
    })?;
    let mut upload = Upload::default();
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::bad_request(format!("the multipart body cannot be read: {e}"))
    };
    while let Some(field) = form.next_field().await.map_err(bad)? {
        match field.name().unwrap_or_default() {
            "file" => upload.file = Some(field.bytes().await.map_err(bad)?),
            "language" => upload.language = Some(field.text().await.map_err(bad)?),
            "response_format" => upload.format = Some(field.text().await.map_err(bad)?),
            // Words the caller is likely to use (another kefu sends its knowledge
            // base's names for what it answers).
            "prompt" => upload.prompt = Some(field.text().await.map_err(bad)?),
            // model, temperature, timestamp_granularities[]…: this node's own
            // model answers as it always does.
            _ => {
                field.bytes().await.map_err(bad)?;
            }
        }
    }
    Ok(upload)
}

async fn transcriptions(
    State(ops): State<Arc<Ops>>,
    headers: axum::http::HeaderMap,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    // Another kefu's draft: decoded only on a spare core (else 503 at once).
    let draft = headers.contains_key(crate::speech::remote::DRAFT_HEADER);
    let result = transcribe(&ops, form, draft).await;
    served(
        "transcription",
        match &result {
            Ok(_) => "ok",
            Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => "busy",
            Err(_) => "refused",
        },
    );
    result
}

async fn transcribe(
    ops: &Ops,
    form: Result<Multipart, MultipartRejection>,
    draft: bool,
) -> Result<Response, ApiError> {
    let Some(runtime) = ops.speech.recognition.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node does not recognise speech: no plan listens and serve_speech is off",
        ));
    };
    let upload = read_upload(form).await?;
    let format = upload.format.as_deref().unwrap_or("json").to_string();
    if !matches!(format.as_str(), "json" | "verbose_json" | "text") {
        return Err(ApiError::bad_request(
            "response_format must be json, verbose_json or text",
        ));
    }
    let language = match upload.language.as_deref().map(str::trim) {
        None | Some("") => Language::Auto,
        Some(l @ ("en" | "zh")) => l.parse().unwrap_or(Language::Auto),
        Some(_) => {
            return Err(ApiError::bad_request(
                "language must be en or zh, or left out",
            ));
        }
    };
    if upload
        .prompt
        .as_ref()
        .is_some_and(|p| p.chars().count() > PROMPT_CHARS)
    {
        return Err(ApiError::bad_request(format!(
            "prompt must be at most {PROMPT_CHARS} characters"
        )));
    }
    let hint = upload.prompt.map(Arc::from);
    let Some(file) = upload.file else {
        return Err(ApiError::bad_request("the upload has no `file` part"));
    };
    let audio = tokio::task::spawn_blocking(move || {
        let (mono, rate) = crate::media::wav::decode_mono(&file).map_err(|e| {
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("the file must be WAV audio (PCM or float): {e}"),
            )
        })?;
        crate::media::wav::resample(&mono, rate, 16_000)
            .map_err(|e| ApiError::bad_request(format!("the audio cannot be resampled: {e}")))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    // An English-only model hears a request that names no language as English.
    let language = if language == Language::Auto && runtime.asr.model.supports(language).is_err() {
        Language::En
    } else {
        language
    };
    let seconds = audio.len() as f64 / 16_000.0;
    let pending = runtime
        .asr
        .submit_local(audio, language, hint, draft)
        .map_err(refused)?;
    let transcript = pending
        .await
        .map_err(|_| refused(AsrError::Stopped))?
        .map_err(refused)?;
    Ok(match format.as_str() {
        "text" => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            transcript.text,
        )
            .into_response(),
        "verbose_json" => Json(serde_json::json!({
            "task": "transcribe",
            "language": transcript.language,
            "duration": seconds,
            "text": transcript.text,
        }))
        .into_response(),
        _ => Json(serde_json::json!({ "text": transcript.text })).into_response(),
    })
}

/// Recognition's refusals as HTTP: busy → 503 with a retry time; a language the
/// model cannot hear → 400.
fn refused(e: AsrError) -> ApiError {
    match e {
        AsrError::Busy(_) => ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "recognition is busy on this node; try again or another node",
            )
        },
        e @ AsrError::EnglishOnly(..) => ApiError::bad_request(e.to_string()),
        other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

#[derive(Deserialize)]
struct SpeechRequest {
    input: String,
    voice: String,
    #[serde(default)]
    response_format: Option<String>,
    #[serde(default)]
    speed: Option<f32>,
    /// Accepted and ignored: the voice decides the engine.
    #[serde(default)]
    #[allow(dead_code)]
    model: Option<String>,
}

async fn speech(
    State(ops): State<Arc<Ops>>,
    body: Result<Json<SpeechRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let result = speak(&ops, body).await;
    served("speech", if result.is_ok() { "ok" } else { "refused" });
    result
}

async fn speak(
    ops: &Ops,
    body: Result<Json<SpeechRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let text = request.input.trim().to_string();
    if text.is_empty() || text.chars().count() > MAX_INPUT {
        return Err(ApiError::bad_request(format!(
            "input must be 1 to {MAX_INPUT} characters"
        )));
    }
    let pcm = match request.response_format.as_deref() {
        None | Some("wav") => false,
        Some("pcm") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "response_format must be wav or pcm (kefu encodes no mp3, opus, aac or flac)",
            ));
        }
    };
    if request
        .speed
        .is_some_and(|s| (s - 1.0).abs() > f32::EPSILON)
    {
        return Err(ApiError::bad_request(
            "speed must be 1.0: kefu's voices speak at their own pace",
        ));
    }
    let voice = request.voice;
    if crate::speech::tts::remote_voice(&voice).is_some() {
        return Err(ApiError::bad_request(
            "voice must be one of this node's own voices",
        ));
    }
    crate::speech::tts::check_voice_name(&voice)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let speaker = ops.speech.synthesis.clone();
    tokio::task::spawn_blocking(move || {
        // The text may carry a customer's words: never on this node's disk.
        let samples = speaker.speak_private(&voice, &text).map_err(|e| match e {
            crate::speech::tts::TtsError::Model(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m.to_string())
            }
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        })?;
        let failed = |e: crate::media::wav::WavError| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        };
        Ok(if pcm {
            let wide = crate::media::wav::resample(&samples, crate::speech::tts::RATE, 24_000)
                .map_err(failed)?;
            let raw: Vec<u8> = wide
                .iter()
                .flat_map(|s| ((s * 32767.0).clamp(-32768.0, 32767.0) as i16).to_le_bytes())
                .collect();
            ([(header::CONTENT_TYPE, "audio/pcm")], raw).into_response()
        } else {
            let wav = crate::media::wav::encode_pcm16(&samples, crate::speech::tts::RATE)
                .map_err(failed)?;
            ([(header::CONTENT_TYPE, "audio/wav")], wav).into_response()
        })
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}
