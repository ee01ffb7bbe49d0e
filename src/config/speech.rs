//! Remote speech engines in kefu.toml: `[[speech_service]]` (an OpenAI-compatible
//! `/v1/audio` API: a GPU pool, a Mandarin engine, another kefu), `[recognition]`
//! (which languages' callers are heard by which service) and `serve_speech` (this
//! node serves that API from its own models, for a CPU pool).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

/// `[[speech_service]]` as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeechServiceFile {
    /// What `[recognition]` and `remote:NAME:VOICE` voices call it.
    pub name: String,
    /// The API's base up to `/v1`: "http://10.0.0.5:8000/v1".
    pub url: String,
    /// Sent as a bearer token (a kefu node's integrator token, a pool's key).
    pub api_key: Option<String>,
    /// The longest one request may take before the local model is used, "3s".
    pub timeout: Option<String>,
    /// The `model` sent with transcriptions (default "whisper-1").
    pub transcription_model: Option<String>,
    /// The `model` sent with speech requests (default "tts-1").
    pub speech_model: Option<String>,
}

/// A remote speech service, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpeechService {
    pub name: String,
    pub url: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
    pub transcription_model: String,
    pub speech_model: String,
}

/// The default deadline: a caller hears "one moment" after 1.5 s anyway.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// The services, checked: distinct names of letters, digits, `-` and `_`; an
/// http(s) URL; a deadline between 100 ms and 60 s.
pub fn services(files: Vec<SpeechServiceFile>) -> anyhow::Result<Vec<SpeechService>> {
    let mut out: Vec<SpeechService> = Vec::new();
    for f in files {
        let name = f.name.trim().to_string();
        let what = format!("[[speech_service]] {name:?}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("{what}: a name is letters, digits, '-' and '_'");
        }
        if name == "local" || out.iter().any(|s| s.name == name) {
            bail!("{what}: names must be distinct and not \"local\"");
        }
        let url = f.url.trim().trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&url).with_context(|| format!("{what}: url {url:?}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            bail!("{what}: url {url:?} must be http:// or https:// with a host");
        }
        let timeout = match f.timeout {
            Some(t) => super::duration("timeout", &t).with_context(|| what.clone())?,
            None => DEFAULT_TIMEOUT,
        };
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&timeout) {
            bail!("{what}: timeout must be between 100ms and 60s");
        }
        out.push(SpeechService {
            name,
            url,
            api_key: f.api_key.filter(|k| !k.is_empty()),
            timeout,
            transcription_model: f.transcription_model.unwrap_or_else(|| "whisper-1".into()),
            speech_model: f.speech_model.unwrap_or_else(|| "tts-1".into()),
        });
    }
    Ok(out)
}

impl super::Config {
    /// What spreads kefu over machines, taken out of `f`: `[voices]` (which may
    /// name remote voices), the speech services, `[recognition]`,
    /// `serve_speech`, `cluster_node` and `advertised_address`.
    pub(super) fn merge_machines(&mut self, f: &mut super::FileConfig) -> anyhow::Result<()> {
        self.voices.extend(super::voices(f.voices.take())?);
        self.speech_services = services(std::mem::take(&mut f.speech_services))?;
        self.recognition = recognition(f.recognition.take(), &self.speech_services)?;
        check_voices(&self.voices, &self.speech_services)?;
        self.serve_speech = f.serve_speech.unwrap_or(self.serve_speech);
        self.cluster_node = super::cluster_node(f.cluster_node.take(), f.database.as_deref())?;
        self.advertised_address = f.advertised_address.or(self.advertised_address);
        Ok(())
    }
}

/// `[recognition]`: language (zh, en, auto) → a service's name, or "local".
/// Only remote choices are kept.
pub fn recognition(
    table: Option<BTreeMap<String, String>>,
    services: &[SpeechService],
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (language, service) in table.unwrap_or_default() {
        if !matches!(language.as_str(), "zh" | "en" | "auto") {
            bail!("[recognition]: unknown language {language:?} (zh, en or auto)");
        }
        if service == "local" {
            continue;
        }
        known(services, &service).with_context(|| format!("[recognition] {language}"))?;
        out.insert(language, service);
    }
    Ok(out)
}

/// A `[voices]` value that is a remote voice (`remote:SERVICE:VOICE`) must name
/// a configured service.
pub fn check_voices(
    voices: &BTreeMap<String, String>,
    services: &[SpeechService],
) -> anyhow::Result<()> {
    for (language, voice) in voices {
        if let Some(rest) = voice.strip_prefix("remote:") {
            let Some((service, name)) = rest
                .split_once(':')
                .filter(|(s, v)| !s.is_empty() && !v.is_empty())
            else {
                bail!("[voices] {language}: write a remote voice as \"remote:SERVICE:VOICE\"");
            };
            known(services, service)
                .with_context(|| format!("[voices] {language} = {voice:?} ({name})"))?;
        }
    }
    Ok(())
}

fn known(services: &[SpeechService], name: &str) -> anyhow::Result<()> {
    if services.iter().any(|s| s.name == name) {
        return Ok(());
    }
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    bail!("no [[speech_service]] named {name:?} (services: {names:?}; or \"local\")")
}
