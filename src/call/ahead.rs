//! Answers rendered ahead: every knowledge-base answer and every sentence of the
//! engine's own an `ask` node may speak, in that node's voice, at start and after
//! each reload of the plans or the knowledge base. A known answer then costs no
//! synthesis on the caller's turn; only sentences carrying a customer's values
//! (`${order}`) are rendered on the call, sentence by sentence.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::dialogue::kb::KnowledgeBase;
use crate::dialogue::reload::LiveKb;
use crate::dialogue::{Lang, Matcher};
use crate::dialplan::Registry;
use crate::dialplan::actions::Action;
use crate::dialplan::reload::LiveDialplans;
use crate::media::prompt::PromptCache;

/// Sentences kept rendered at most: the synthesis cache holds 4096 in memory, and
/// more would push out the prompts calls play.
pub const MOST: usize = 2000;
/// Rest after synthesising a sentence, as a multiple of the time it took: about a
/// fifth of a core at most goes to rendering ahead, so it never disturbs live
/// calls (measured: unpaced, a first start's rendering took a whole core beside
/// 1000 calls, which then lost packets). Cached sentences take no rest.
const REST: u32 = 4;
/// A sentence answered in less than this came from a cache.
const CACHED: Duration = Duration::from_millis(5);

/// The (voice, language) pairs `ask` nodes speak answers in.
pub fn voices(plans: &Registry) -> BTreeSet<(Option<String>, String)> {
    plans
        .plans
        .iter()
        .flat_map(|p| {
            p.nodes.iter().filter_map(|n| match &n.action {
                Action::Ask(a) => Some((p.voice.clone(), a.language.clone())),
                _ => None,
            })
        })
        .collect()
}

/// The sentences the dialogue may speak in `lang` with nothing of the customer's
/// in them: voice answers, slot questions, the engine's own replies.
pub fn sentences(kb: &KnowledgeBase, lang: Lang) -> BTreeSet<String> {
    let r = &kb.replies;
    let texts = kb
        .intents
        .iter()
        .flat_map(|i| {
            std::iter::once(i.answer.best(lang)).chain(
                i.slots
                    .iter()
                    .flat_map(|s| [s.prompt.best(lang), s.retry.best(lang)]),
            )
        })
        .chain([
            r.fallback.best(lang),
            r.handover.best(lang),
            r.give_up.best(lang),
        ]);
    texts
        .flat_map(crate::speech::tts::sentences)
        .filter(|s| !s.contains("${"))
        .collect()
}

/// Renders what the live plans and knowledge base may say, now and after every
/// change, until `stop`.
pub async fn keep_rendered(
    prompts: Arc<PromptCache>,
    plans: LiveDialplans,
    kb: LiveKb,
    every: Duration,
    stop: CancellationToken,
) {
    let mut rendered: Option<(Arc<Registry>, Arc<Matcher>)> = None;
    loop {
        let now = (plans.current(), kb.current());
        let changed = rendered
            .as_ref()
            .is_none_or(|(p, k)| !Arc::ptr_eq(p, &now.0) || !Arc::ptr_eq(k, &now.1));
        if changed {
            let (p, k, cache, halt) = (now.0.clone(), now.1.clone(), prompts.clone(), stop.clone());
            let rendering = move || render(&cache, &p, &k.kb, &halt);
            if let Err(e) = tokio::task::spawn_blocking(rendering).await {
                tracing::warn!(error = %e, "rendering answers ahead stopped");
            }
            rendered = Some(now);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Renders every sentence for every answering voice (cached ones cost a lookup),
/// paced (see [`REST`]).
fn render(prompts: &PromptCache, plans: &Registry, kb: &KnowledgeBase, stop: &CancellationToken) {
    let started = Instant::now();
    let (mut count, mut failed) = (0usize, 0usize);
    'voices: for (voice, language) in voices(plans) {
        let lang = Lang::from_code(&language).unwrap_or(Lang::Zh);
        for sentence in sentences(kb, lang) {
            if stop.is_cancelled() {
                return; // shutting down
            }
            if count >= MOST {
                tracing::warn!(
                    most = MOST,
                    "the knowledge base has more sentences than are rendered ahead; the rest are rendered when first said"
                );
                break 'voices;
            }
            count += 1;
            let took = Instant::now();
            if let Err(e) = prompts.say(voice.as_deref(), &language, &sentence) {
                failed += 1;
                tracing::debug!(error = %e, "cannot render an answer ahead");
            }
            let took = took.elapsed();
            if took > CACHED {
                std::thread::sleep(took * REST);
            }
        }
    }
    tracing::info!(
        sentences = count,
        failed,
        ms = started.elapsed().as_millis() as u64,
        "answers rendered ahead"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_knowledge_base_has_sentences_to_render_and_none_with_values() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let kb = crate::dialogue::kb::load_dir(&root.join("dialplans/kb"))
            .unwrap_or_else(|e| panic!("{e}"));
        for lang in [Lang::En, Lang::Zh] {
            let all = sentences(&kb, lang);
            assert!(all.len() > kb.intents.len(), "{lang:?}: {}", all.len());
            assert!(all.iter().all(|s| !s.contains("${")));
        }
        let en = sentences(&kb, Lang::En);
        assert!(
            en.iter()
                .any(|s| s.starts_with("What is your six-digit order number")),
            "{en:?}"
        );
    }
}
