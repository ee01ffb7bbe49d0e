//! `kefu serve`: starts every part, and stops them in order on SIGTERM/SIGINT.
//!
//! Shutdown drains: new INVITEs get 503 and /readyz turns 503 at once, live calls
//! may finish for `drain_timeout`, then the rest are hung up with BYE.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::api::{self, Health};
use crate::channel::chat::TextChannels;
use crate::channel::sip::{self, CallGate};
use crate::config::Config;
use crate::dialogue::Matcher;
use crate::dialogue::conversations::Conversations;
use crate::dialogue::kb::{load_dir as load_kb_dir, load_files as load_kb_files};
use crate::dialogue::reload::LiveKb;
use crate::dialogue::semantic::{Encoder, EncoderFiles};
use crate::dialplan::AudioRoot;
use crate::dialplan::reload::{self, LiveDialplans};
use crate::media::prompt::PromptCache;
use crate::watch::{Reloaded, Schedule};

mod speech;
use speech::plans_and_speech;

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    open_files_for(config.max_calls);
    private_data_dir(&config.data)?;
    // The store first: with encryption on and no key, nothing else starts.
    let url = config.database_url();
    let store = config.open_store().await?;
    tracing::info!(database = %crate::store::redact(&url), encrypted = store.sealer().encrypted(), "store open");
    let audio = AudioRoot(config.audio.clone());
    let (prompts, speaker, registry, speech) = plans_and_speech(&config, &audio).await?;
    let live = LiveDialplans::new(registry);
    let encoder = load_encoder(&config).await?;
    let kb = live_kb(&config, encoder.clone()).await?;
    let conversations = Arc::new(Conversations::new(config.max_conversations));
    warn_open_webhooks(&config);
    let center = Arc::new(crate::agents::center::Center::new(config.queues.clone()));
    store
        .slas()
        .set(config.queues.iter().map(|q| (q.name.clone(), q.sla)));
    // Unanswered questions are clustered by meaning with the re-ranker's model.
    let embed: Option<crate::store::analytics::Embed> = encoder.clone().map(|e| {
        Arc::new(move |texts: &[&str]| {
            Ok(e.embed(texts)?
                .into_iter()
                .map(|e| e.vector.to_vec())
                .collect())
        }) as crate::store::analytics::Embed
    });
    let text = text_channels(&config, &kb, &conversations, &store, &center).await?;
    let reloads = reloads_recorded(&store, &kb, &live);

    let stop = CancellationToken::new();
    run_queues(&center, &store, &text, &stop);
    let hangup_all = CancellationToken::new();
    let gate = Arc::new(CallGate::default());
    tokio::spawn(give_memory_back(gate.clone(), stop.clone()));
    let health = Arc::new(Health {
        gate: gate.clone(),
        ..Health::default()
    });

    let call_service = text.service.clone();
    let chats = text.service.clone();
    let (webrtc, calls) = browser_calls(&config, &text)?;
    let callbacks = callbacks(&config, &store);
    let http_task = start_http(
        &config,
        health.clone(),
        Shared {
            store: &store,
            kb: &kb,
            conversations: &conversations,
            text,
            calls,
            callbacks: callbacks.clone(),
            center: &center,
            embed: &embed,
            speech: api::speech::Engines {
                recognition: speech.clone(),
                synthesis: speaker,
            },
        },
        stop.clone(),
    )
    .await?;

    let (sip, incoming) = sip::bind(
        config.clone(),
        live.clone(),
        sip::Lifecycle {
            gate: gate.clone(),
            stop: stop.clone(),
            hangup_all: hangup_all.clone(),
        },
        speech,
        Arc::new(crate::call::CallDialogue {
            kb: kb.clone(),
            prompts: prompts.clone(),
            conversations,
            store: store.clone(),
            service: call_service,
        }),
        center.clone(),
    )
    .await?;
    tracing::info!(addr = %sip.local_addr(), tcp = config.sip_tcp, "SIP listening");
    webrtc.attach(sip.clone());
    callbacks.attach(sip.staff.clone(), prompts.clone(), hangup_all.clone());
    join_cluster(&config, &store, &sip, chats, &stop).await?;
    tokio::spawn(sip.clone().run(incoming));
    watch_and_keep(
        &config,
        Watched {
            live,
            audio,
            prompts,
            kb,
            encoder,
            reloads,
        },
        &store,
        &url,
        embed,
        &stop,
    );
    // Ready once SIP is bound and dialplans are live.
    health.sip_ready.store(true, Ordering::Release);

    shutdown_signal().await;
    drain(&gate, &hangup_all, config.drain_timeout).await;
    stop.cancel();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), http_task).await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Where reloads are reported (and recorded in the store); what is live at start
/// is recorded like any later reload.
fn reloads_recorded(
    store: &crate::store::Store,
    kb: &LiveKb,
    live: &LiveDialplans,
) -> tokio::sync::mpsc::Sender<Reloaded> {
    let (reloads, reloads_rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(record_reloads(store.clone(), reloads_rx));
    for (what, described) in [
        ("kb", crate::dialogue::reload::describe(&kb.current())),
        ("dialplans", reload::describe(&live.current())),
    ] {
        let _ = reloads.try_send(Reloaded {
            what,
            outcome: Ok(described),
        });
    }
    reloads
}

/// The semantic re-ranker's encoder (its example embeddings cached on disk), or
/// None when `semantic = false`.
async fn load_encoder(config: &Config) -> anyhow::Result<Option<Arc<Encoder>>> {
    if !config.semantic {
        tracing::info!("semantic re-ranker off (`semantic = false`): matching by words only");
        return Ok(None);
    }
    let (models, cache) = (
        config.models.clone(),
        config
            .embed_cache
            .clone()
            .unwrap_or_else(|| config.data.join("embeddings.bin")),
    );
    let encoder =
        tokio::task::spawn_blocking(move || open_encoder(&models, Some(&cache))).await??;
    Ok(Some(encoder))
}

/// Browser calls: answered over HTTP, placed with the SIP edge's resources once
/// it is bound (`WebRtcEdge::attach`).
fn browser_calls(
    config: &Config,
    text: &Arc<TextChannels>,
) -> anyhow::Result<(
    Arc<crate::channel::webrtc::WebRtcEdge>,
    Arc<crate::channel::webrtc::routes::Calls>,
)> {
    let edge = crate::channel::webrtc::WebRtcEdge::new(config.webrtc.clone())?;
    let calls = Arc::new(crate::channel::webrtc::routes::Calls {
        edge: edge.clone(),
        text: text.clone(),
    });
    Ok((edge, calls))
}

/// Says so at start when a webhook takes posts from anyone.
fn warn_open_webhooks(config: &Config) {
    if config.sms_out.is_some() && config.sms_inbound_token.is_none() {
        tracing::warn!(
            "SMS is on but `sms_inbound_token` is not set: anyone can post to /sms/inbound"
        );
    }
}

/// Calling customers back from tickets, through the first trunk (placed once
/// the SIP edge is bound: `Callbacks::attach`).
fn callbacks(
    config: &Config,
    store: &crate::store::Store,
) -> Arc<crate::call::callback::Callbacks> {
    let through = config.dial_out_trunk().and_then(|t| {
        Some(crate::call::callback::Through {
            name: t.name.clone(),
            outbound: t.outbound()?,
            caller_id: t.caller_id.clone().unwrap_or_else(|| "kefu".into()),
        })
    });
    crate::call::callback::Callbacks::new(store.clone(), through, config.rtp_timeout)
}

/// The text channels, with the web chat customers' keys under the store's
/// secret (every node of a cluster, and this one after a restart, accepts them).
async fn text_channels(
    config: &Config,
    kb: &LiveKb,
    conversations: &Arc<Conversations>,
    store: &crate::store::Store,
    center: &Arc<crate::agents::center::Center>,
) -> anyhow::Result<Arc<TextChannels>> {
    let keys = store.secret("chat customer keys").await?;
    Ok(Arc::new(TextChannels::new(
        config,
        kb.clone(),
        conversations.clone(),
        store.clone(),
        center.clone(),
        keys,
    )))
}

/// With `cluster_node`: shares the agents with the other nodes on the database
/// (`crate::cluster`), and rings no agent another node holds.
async fn join_cluster(
    config: &Config,
    store: &crate::store::Store,
    sip: &Arc<sip::SipService>,
    chats: Arc<crate::store::ConversationService>,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let Some(node) = &config.cluster_node else {
        return Ok(());
    };
    let cluster = crate::cluster::Cluster::join(
        node,
        &config.database_url(),
        store.clone(),
        sip.staff.center.clone(),
        sip.staff.phones.clone(),
        chats,
        stop.clone(),
    )
    .await
    .context("cannot join the cluster")?;
    let _ = sip.staff.claims.set(cluster);
    Ok(())
}

/// What the HTTP API shares with the rest of the server.
struct Shared<'a> {
    store: &'a crate::store::Store,
    kb: &'a LiveKb,
    conversations: &'a Arc<Conversations>,
    text: Arc<TextChannels>,
    calls: Arc<crate::channel::webrtc::routes::Calls>,
    callbacks: Arc<crate::call::callback::Callbacks>,
    center: &'a Arc<crate::agents::center::Center>,
    embed: &'a Option<crate::store::analytics::Embed>,
    speech: api::speech::Engines,
}

/// Binds the HTTP address and serves the API, the pages and the chat channels
/// until `stop`.
async fn start_http(
    config: &Config,
    health: Arc<Health>,
    shared: Shared<'_>,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let text = shared.text;
    let http = tokio::net::TcpListener::bind(config.http)
        .await
        .with_context(|| format!("cannot bind HTTP on {}", config.http))?;
    tracing::info!(addr = %http.local_addr()?, "HTTP listening");
    let ops = Arc::new(api::Ops {
        store: shared.store.clone(),
        access: Arc::new(crate::http::routes::Access {
            store: shared.store.clone(),
            throttle: std::sync::Mutex::new(crate::auth::throttle::Throttle::default()),
            secure_cookies: config.secure_cookies,
            session_ttl: config.session_ttl,
            trusted_proxies: config.trusted_proxies.clone(),
            budgets: text.budgets.clone(),
            widget: config.widget.clone(),
        }),
        kb: shared.kb.clone(),
        kb_dir: config.kb.clone(),
        conversations: shared.conversations.clone(),
        text: text.clone(),
        center: shared.center.clone(),
        webrtc: shared.calls.edge.clone(),
        callbacks: shared.callbacks,
        embed: shared.embed.clone(),
        speech: shared.speech,
        node: config.cluster_node.clone(),
        routes: std::sync::OnceLock::new(),
    });
    let (router, _) = api::router(health, text, shared.calls, ops);
    Ok(tokio::spawn(crate::http::listen::serve(
        http,
        router,
        config.http_limits,
        stop,
    )))
}

/// Makes the data directory, for kefu's own user only: customers' data lives there
/// (database, reports, recordings, caches), whatever mode it was made with.
fn private_data_dir(data: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(data)
        .with_context(|| format!("cannot create data directory {}", data.display()))?;
    if let Err(e) = std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700)) {
        tracing::warn!(dir = %data.display(), error = %e, "cannot make the data directory private");
    }
    Ok(())
}

/// Every dialplan, checked (start-up stops on the first invalid one).
/// What the watchers keep live.
struct Watched {
    live: LiveDialplans,
    audio: AudioRoot,
    prompts: Arc<PromptCache>,
    kb: LiveKb,
    encoder: Option<Arc<Encoder>>,
    reloads: tokio::sync::mpsc::Sender<Reloaded>,
}

/// The background work until `stop`: dialplan and knowledge-base reloads, backups,
/// the daily report files and retention.
fn watch_and_keep(
    config: &Config,
    w: Watched,
    store: &crate::store::Store,
    url: &str,
    embed: Option<crate::store::analytics::Embed>,
    stop: &CancellationToken,
) {
    let Watched {
        live,
        audio,
        prompts,
        kb,
        encoder,
        reloads,
    } = w;
    let (prompts_for_answers, live_for_answers, kb_for_answers) =
        (prompts.clone(), live.clone(), kb.clone());
    tokio::spawn(reload::watch(
        live,
        config.dialplans.clone(),
        audio,
        prompts,
        config.kb.clone(),
        Schedule {
            every: config.reload_interval,
            stop: stop.clone(),
            report: Some(reloads.clone()),
        },
    ));
    // Also when the directory is missing: it may be made later (an upload).
    tokio::spawn(crate::dialogue::reload::watch(
        kb,
        config.kb.clone(),
        encoder,
        Schedule {
            every: config.reload_interval,
            stop: stop.clone(),
            report: Some(reloads),
        },
    ));
    // Known answers are rendered before a caller asks (and again after a reload).
    tokio::spawn(crate::call::ahead::keep_rendered(
        prompts_for_answers,
        live_for_answers,
        kb_for_answers,
        config.reload_interval,
        stop.clone(),
    ));
    if let Some(every) = config.backup_every {
        let dir = config
            .backup_dir
            .clone()
            .unwrap_or_else(|| config.data.join("backups"));
        tokio::spawn(crate::store::backup::schedule(
            store.clone(),
            url.to_string(),
            dir,
            every,
            config.backup_keep,
            stop.clone(),
        ));
    }
    tokio::spawn(crate::store::analytics::daily(
        store.clone(),
        config.data.join("reports"),
        embed,
        stop.clone(),
    ));
    if let Some(days) = config.retention_days {
        tokio::spawn(crate::store::retention::run(
            store.clone(),
            days,
            stop.clone(),
        ));
    }
}

/// Draining: no new calls; live ones end by themselves within `timeout`, or are
/// hung up.
async fn drain(gate: &CallGate, hangup_all: &CancellationToken, timeout: std::time::Duration) {
    tracing::info!(active = gate.active(), drain_timeout = ?timeout, "shutting down: no new calls, draining live ones");
    gate.start_draining();
    if tokio::time::timeout(timeout, gate.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            active = gate.active(),
            "drain timeout: hanging up the remaining calls"
        );
        hangup_all.cancel();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), gate.tracker.wait()).await;
    }
}

/// Runs the agent queues until `stop`: the ledger of finished stays goes to the
/// store (analytics), and chats nobody took within a queue's maximum wait are told
/// so.
fn run_queues(
    center: &Arc<crate::agents::center::Center>,
    store: &crate::store::Store,
    text: &Arc<TextChannels>,
    stop: &CancellationToken,
) {
    let (mut ledger, store) = (center.ledger(), store.clone());
    tokio::spawn(async move {
        while let Some(stay) = ledger.recv().await {
            if let Err(e) = store.record_stay(&stay).await {
                tracing::warn!(error = format!("{e:#}"), item = %stay.item, "cannot record a queue stay");
            }
        }
    });
    let (c, stop) = (center.clone(), stop.clone());
    tokio::spawn(async move { c.run(stop).await });
    let (c, text) = (center.clone(), text.clone());
    tokio::spawn(async move {
        loop {
            c.timed_out().await;
            for item in c.take_timed_out() {
                if let Err(e) = text.queue_gave_up(&item).await {
                    tracing::warn!(conversation = %crate::log_id(&item), reason = %e.reason, "cannot tell the customer the queue gave up");
                }
            }
        }
    });
}

/// Notes the knowledge base and dialplans this server started with.
/// Records what a reload put live (or refused) in the store: the version table and
/// the audit log, under the actor "watcher" (a file edit names no user).
async fn record_reloads(store: crate::store::Store, mut rx: tokio::sync::mpsc::Receiver<Reloaded>) {
    use crate::store::writer::VersionKind;
    while let Some(r) = rx.recv().await {
        let kind = if r.what == "kb" {
            VersionKind::Kb
        } else {
            VersionKind::Dialplans
        };
        let result = match &r.outcome {
            Ok((version, summary)) => {
                let w = crate::store::Write::Version {
                    kind,
                    version: version.clone(),
                    summary: summary.clone(),
                    at: chrono::Utc::now(),
                };
                match store.write(w).await {
                    Ok(_) => {
                        store
                            .audit("watcher", &format!("{}.reload", r.what), version, summary)
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
            Err(why) => {
                let first = why.lines().next().unwrap_or_default();
                store
                    .audit("watcher", &format!("{}.rejected", r.what), "", first)
                    .await
            }
        };
        if let Err(e) = result {
            tracing::error!(error = format!("{e:#}"), "cannot record a reload");
        }
    }
}

/// The semantic re-ranker's sentence-embedding model from `models` (ONNX Runtime is
/// loaded from there too); `cache_file` keeps example embeddings between runs.
pub fn open_encoder(
    models: &std::path::Path,
    cache_file: Option<&std::path::Path>,
) -> anyhow::Result<Arc<Encoder>> {
    let dir = crate::speech::ModelDir(models.to_path_buf());
    crate::speech::models::init_onnx_runtime(&dir.onnxruntime()?)?;
    let files = EncoderFiles::in_models(models, cache_file.map(std::path::Path::to_path_buf));
    let encoder = Encoder::load(files, ENCODER_THREADS)
        .context("cannot start the semantic re-ranker (set `semantic = false` in kefu.toml to match by words only)")?;
    Ok(Arc::new(encoder))
}

/// ONNX Runtime threads per sentence embedding.
const ENCODER_THREADS: usize = 2;

/// The live knowledge base ([`load_kb`]), matched by meaning too once its examples
/// are embedded.
async fn live_kb(config: &Config, encoder: Option<Arc<Encoder>>) -> anyhow::Result<LiveKb> {
    let (kb, embedding) = load_kb(&config.kb, encoder, config.semantic_wait).await?;
    tracing::info!(dir = %config.kb.display(), intents = kb.kb.intents.len(), version = %kb.kb.version, "knowledge base loaded");
    let kb = LiveKb::new(kb);
    if let Some(job) = embedding {
        tokio::spawn(meaning_when_ready(kb.clone(), job));
    }
    Ok(kb)
}

/// The knowledge base, indexed; without a knowledge-base directory, the built-in small
/// talk only (said in the log). Embedding a large knowledge base's examples the first
/// time takes minutes (about 4 ms each on one core; they are kept on disk after): if
/// it takes longer than `wait`, the start goes on matching by words, and the job that
/// is still embedding is returned for [`meaning_when_ready`].
async fn load_kb(
    dir: &std::path::Path,
    encoder: Option<Arc<Encoder>>,
    wait: std::time::Duration,
) -> anyhow::Result<(Matcher, Option<EmbeddingJob>)> {
    let d = dir.to_path_buf();
    let kb = tokio::task::spawn_blocking(move || {
        if d.is_dir() {
            load_kb_dir(&d)
        } else {
            tracing::warn!(dir = %d.display(), "no knowledge-base directory: answering small talk only");
            load_kb_files(&[])
        }
        .map_err(|e| anyhow::anyhow!("the knowledge base in {} is invalid:\n{e}", d.display()))
    })
    .await??;
    let kb = Arc::new(kb);
    let Some(encoder) = encoder else {
        return Ok((Matcher::with_encoder(kb, None)?, None));
    };
    // A thread of its own, not the runtime's blocking pool: a stop while it is still
    // embedding must not wait minutes for it (the runtime waits for its pool).
    let (tx, mut job) = tokio::sync::oneshot::channel();
    let k = kb.clone();
    std::thread::Builder::new()
        .name("kb-embed".into())
        .spawn(move || {
            let _ = tx.send(Matcher::with_encoder(k, Some(encoder)));
        })
        .context("cannot start embedding the knowledge base")?;
    match tokio::time::timeout(wait, &mut job).await {
        Ok(done) => Ok((done.context("embedding the knowledge base stopped")??, None)),
        Err(_) => {
            let examples: usize = kb.intents.iter().map(|i| i.examples.len()).sum();
            tracing::warn!(
                examples,
                waited = ?wait,
                "the knowledge base's example questions are still being embedded: matching by words until they are"
            );
            Ok((Matcher::new(kb), Some(job)))
        }
    }
}

type EmbeddingJob =
    tokio::sync::oneshot::Receiver<Result<Matcher, crate::dialogue::semantic::EncodeError>>;

/// Swaps the knowledge base matched by meaning in once its examples are embedded,
/// unless an edit has made another version live meanwhile (that reload embedded
/// its own examples).
async fn meaning_when_ready(kb: LiveKb, job: EmbeddingJob) {
    match job.await {
        Ok(Ok(m)) => {
            let version = m.kb.version.clone();
            if kb.replace_if(|live| live.kb.version == version && !live.is_semantic(), m) {
                tracing::info!(%version, "knowledge base now matched by meaning too");
            }
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot embed the knowledge base's examples: matching by words only")
        }
        Err(e) => tracing::error!(error = %e, "embedding the knowledge base's examples failed"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Each call holds an RTP socket, the RTP clock's handle on it and an RTCP
/// socket (and an agent's socket when bridged), so `max_calls` calls need more
/// open files than the usual
/// soft limit of 1024: raise it to the hard limit (as the Go runtime and nginx do),
/// and say so when even that is too low.
pub fn open_files_for(max_calls: usize) {
    let needed = (max_calls as u64) * 4 + 256;
    match rlimit::increase_nofile_limit(needed.max(4096)) {
        Ok(limit) if limit < needed => tracing::warn!(
            limit,
            needed,
            max_calls,
            "the open-file limit is below what max_calls needs (raise the hard limit: LimitNOFILE= or ulimit -Hn)"
        ),
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

/// glibc keeps what calls freed in its arenas, so the process would stay at its
/// busiest size after a peak; when calls end kefu hands that memory back to the
/// system (`malloc_trim`), so it returns to about its idle size. Checked every
/// 2 s: a trim follows any fall in the number of live calls, and another once the
/// SIP stack has let the ended calls' last transactions go (a BYE's transaction is
/// kept for Timer J, 32 s over UDP, to absorb retransmissions).
async fn give_memory_back(gate: Arc<CallGate>, stop: CancellationToken) {
    const TRANSACTIONS_KEPT: std::time::Duration = std::time::Duration::from_secs(34);
    let mut before = gate.active();
    let mut again: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
        }
        let now = gate.active();
        let due = again.is_some_and(|at| tokio::time::Instant::now() >= at);
        if now < before || due {
            let _ = tokio::task::spawn_blocking(trim).await;
        }
        if now < before {
            again = Some(tokio::time::Instant::now() + TRANSACTIONS_KEPT);
        } else if due {
            again = None;
        }
        before = now;
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks glibc's own arenas; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
