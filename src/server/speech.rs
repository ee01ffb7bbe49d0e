//! What `kefu serve` loads for speech before it takes calls: the remote speech
//! services, the voices (prompts spoken at load, answers' voices warmed), the
//! dialplans and speech recognition.

use std::sync::Arc;

use anyhow::Context;

use crate::config::Config;
use crate::dialplan::{AudioRoot, load_dir};
use crate::media::prompt::PromptCache;

async fn load_dialplans(
    config: &Config,
    audio: &AudioRoot,
    prompts: &Arc<PromptCache>,
) -> anyhow::Result<crate::dialplan::Registry> {
    let registry = {
        let (d, a, p) = (config.dialplans.clone(), audio.clone(), prompts.clone());
        tokio::task::spawn_blocking(move || load_dir(&d, &a, &p)).await?
    }
    .map_err(|e| {
        anyhow::anyhow!(
            "dialplans in {} are invalid:\n{e}",
            config.dialplans.display()
        )
    })?;
    tracing::info!(plans = registry.len(), dir = %config.dialplans.display(), "dialplans loaded");
    Ok(registry)
}

/// Speech (the remote services, the voices, recognition) and the dialplans,
/// whose text prompts are spoken at load; the answers' voices warmed.
pub(super) async fn plans_and_speech(
    config: &Config,
    audio: &AudioRoot,
) -> anyhow::Result<(
    Arc<PromptCache>,
    Arc<crate::speech::tts::Speaker>,
    crate::dialplan::Registry,
    Option<Arc<crate::speech::SpeechRuntime>>,
)> {
    let services = speech_services(config)?;
    let (prompts, speaker) = spoken_prompts(config, &services)?;
    let prompts = Arc::new(prompts);
    let registry = load_dialplans(config, audio, &prompts).await?;
    let speech = load_speech(config, &registry, &services).await?;
    warm_voices(&prompts, &registry).await?;
    Ok((prompts, speaker, registry, speech))
}

/// The remote speech services of `[[speech_service]]`, by name.
fn speech_services(config: &Config) -> anyhow::Result<crate::speech::remote::Services> {
    config
        .speech_services
        .iter()
        .map(|s| {
            let service = crate::speech::remote::Service::new(crate::speech::remote::Settings {
                name: s.name.clone(),
                url: s.url.clone(),
                api_key: s.api_key.clone(),
                timeout: s.timeout,
                transcription_model: s.transcription_model.clone(),
                speech_model: s.speech_model.clone(),
            })?;
            tracing::info!(service = %s.name, url = %s.url, timeout = ?s.timeout, "remote speech service");
            Ok((s.name.clone(), service))
        })
        .collect()
}

/// Prompts, with text spoken by the TTS: voices load on first use and renders are
/// kept in `tts_cache` (default under the data directory), so a restart does not
/// synthesise them again. Also returns the speaker, which the speech API uses.
fn spoken_prompts(
    config: &Config,
    services: &crate::speech::remote::Services,
) -> anyhow::Result<(PromptCache, Arc<crate::speech::tts::Speaker>)> {
    for (language, voice) in &config.voices {
        crate::speech::tts::check_voice_name(voice)
            .with_context(|| format!("kefu.toml [voices] {language}"))?;
    }
    let cache = config
        .tts_cache
        .clone()
        .unwrap_or_else(|| config.data.join("tts-cache"));
    let speaker = Arc::new(
        crate::speech::tts::Speaker::new(
            crate::speech::ModelDir(config.models.clone()),
            Some(cache),
        )
        .with_defaults(config.voices.clone())
        .with_services(services.clone()),
    );
    Ok((PromptCache::with_speaker(speaker.clone()), speaker))
}

/// Speech recognition, loaded when a plan listens or the node serves the speech
/// API: a missing model stops start-up here, with the set-up script named,
/// rather than failing a caller later. Languages `[recognition]` sends to a
/// remote service go there first.
async fn load_speech(
    config: &Config,
    registry: &crate::dialplan::Registry,
    services: &crate::speech::remote::Services,
) -> anyhow::Result<Option<Arc<crate::speech::SpeechRuntime>>> {
    if !config.serve_speech && !registry.plans.iter().any(|p| p.listens()) {
        return Ok(None);
    }
    let mut remote = std::collections::HashMap::new();
    for (language, service) in &config.recognition {
        let language = language.parse().map_err(|e: String| anyhow::anyhow!(e))?;
        if let Some(s) = services.get(service) {
            remote.insert(language, s.clone());
        }
    }
    let (models, model, workers) = (
        crate::speech::ModelDir(config.models.clone()),
        config.asr_model.clone(),
        config.asr_workers,
    );
    let runtime = tokio::task::spawn_blocking(move || {
        crate::speech::SpeechRuntime::load(&models, &model, workers, remote)
    })
    .await?
    .context("cannot start speech recognition for the dialplans' listen nodes")?;
    tracing::info!(model = %config.asr_model, workers = config.asr_workers, remote = ?config.recognition, serve = config.serve_speech, "speech recognition ready");
    Ok(Some(runtime))
}

/// Loads the voices that speak `ask` nodes' answers now, not on a caller's first
/// question, and renders the busy notices in the background.
async fn warm_voices(
    prompts: &Arc<PromptCache>,
    registry: &crate::dialplan::Registry,
) -> anyhow::Result<()> {
    // The voices `ask` nodes answer in (the same pairs their answers are rendered
    // ahead in).
    let voices = crate::call::ahead::voices(registry);
    if !voices.is_empty() {
        let p = prompts.clone();
        tokio::task::spawn_blocking(move || {
            for (voice, language) in voices {
                if let Err(e) = p.prepare_voice(voice.as_deref(), &language) {
                    tracing::error!(error = %e, %language, "cannot load the voice for spoken answers");
                }
            }
        })
        .await?;
    }
    // The notices a saturated or queued recogniser has nodes say come when the
    // machine is busiest: they are rendered now, in the background, not on first use.
    let notices: Vec<(Option<String>, String)> = registry
        .plans
        .iter()
        .filter(|p| p.listens())
        .map(|p| (p.voice.clone(), p.language.clone()))
        .collect();
    if !notices.is_empty() {
        let p = prompts.clone();
        tokio::task::spawn_blocking(move || {
            for (voice, language) in notices {
                let zh = language.starts_with("zh");
                let lang = if zh { "zh" } else { "en" };
                let hold_on = crate::dialplan::actions::hold_on_notice(zh);
                let busy = [false, true].map(|ask| crate::dialplan::actions::busy_notice(zh, ask));
                for text in busy.into_iter().chain([hold_on]) {
                    for sentence in crate::speech::tts::sentences(text) {
                        if let Err(e) = p.say(voice.as_deref(), lang, &sentence) {
                            tracing::warn!(error = %e, "cannot render the busy notice ahead");
                        }
                    }
                }
            }
        });
    }
    Ok(())
}
