//! The SIP edge: UDP and TCP transports, the rsipstack endpoint (transactions with
//! timers A–K, dialogs), and the routing of each incoming request.
//!
//! New INVITEs become calls (see [`crate::call`]); in-dialog requests go to their
//! dialog; everything else is answered here (OPTIONS 200, 405, 481, 503).

pub mod guard;
pub mod identity;
mod register;
pub mod stream;
pub mod syntax;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use anyhow::Context;
use rsipstack::EndpointBuilder;
use rsipstack::dialog::dialog::Dialog;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::udp::{UdpConnection, UdpInner};
use rsipstack::transport::{SipAddr, TransportLayer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::call::session_timer::{self, Refreshed, SessionTimer};
use crate::call::{self, CallSetup};
use crate::channel::rtp::ports::PortPool;
use crate::config::Config;
use crate::dialplan::reload::LiveDialplans;
use crate::media::sdp;

/// Feature codes an agent's phone dials (authenticated like its REGISTER): `*1`
/// sets the agent available, `*2` away.
pub const FEATURE_CODES: [(&str, bool); 2] = [("*1", true), ("*2", false)];

/// The confirmation call of a feature code: (a label for messages, the plan).
fn feature_plan(available: bool) -> (&'static str, String) {
    let (code, said) = if available {
        ("*1", "You are now available for calls.")
    } else {
        ("*2", "You are now away. No calls will be offered to you.")
    };
    let label = if available {
        "<feature code *1>"
    } else {
        "<feature code *2>"
    };
    (
        label,
        format!(
            "[dialplan]\nname = \"agent state\"\nnumbers = [\"{code}\"]\nlanguage = \"en\"\n\
             start = \"done\"\n\n[nodes.done]\ntype = \"hangup\"\nprompt = \"say:{said}\"\n"
        ),
    )
}

/// Methods kefu answers, for Allow headers.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, PRACK, REGISTER";

/// Live calls and whether new ones are still taken.
#[derive(Debug, Default)]
pub struct CallGate {
    active: AtomicUsize,
    draining: AtomicBool,
    pub tracker: TaskTracker,
}

/// Held by a call while it is live.
pub struct CallSlot(Arc<CallGate>);

impl Drop for CallSlot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl CallGate {
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.tracker.close();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn try_enter(self: &Arc<Self>, limit: usize) -> Option<CallSlot> {
        if self.is_draining() {
            return None;
        }
        let prev = self.active.fetch_add(1, Ordering::AcqRel);
        if prev >= limit {
            self.active.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(CallSlot(self.clone()))
    }
}

/// Everything the request router needs.
pub struct SipService {
    pub config: Arc<Config>,
    pub dialplans: LiveDialplans,
    pub gate: Arc<CallGate>,
    pub ports: Arc<PortPool>,
    /// Cancelled when calls must end now (drain timeout passed).
    pub hangup_all: CancellationToken,
    /// Speech recognition for `listen` nodes; `None` when no plan listened at start.
    pub speech: Option<Arc<crate::speech::SpeechRuntime>>,
    /// The dialogue core and the voice that speaks its answers (`ask` nodes).
    pub dialogue: Arc<crate::call::CallDialogue>,
    /// Agents' phones: registrations and their authentication.
    pub phones: Arc<crate::agents::Phones>,
    /// The queues, the phones and the dialer, for warm transfers.
    pub staff: Arc<crate::call::transfer::Staff>,
    /// The confirmations agents hear after a feature code (made on first use:
    /// they need the TTS).
    feature_plans: tokio::sync::OnceCell<Option<[Arc<crate::dialplan::Dialplan>; 2]>>,
    dialog_layer: Arc<DialogLayer>,
    local: SocketAddr,
    /// Calls with a session timer, by Call-ID: where their callers' refreshes
    /// (in-dialog re-INVITEs and UPDATEs) are noted.
    refreshes: std::sync::Mutex<HashMap<String, Weak<Refreshed>>>,
}

/// When the SIP edge stops: new calls refused (`gate`), the endpoint stopped
/// (`stop`), live calls hung up (`hangup_all`).
pub struct Lifecycle {
    pub gate: Arc<CallGate>,
    pub stop: CancellationToken,
    pub hangup_all: CancellationToken,
}

/// Binds the SIP transports and starts the endpoint. Returns the service and the
/// bound UDP address (useful when port 0 was asked for).
pub async fn bind(
    config: Arc<Config>,
    dialplans: LiveDialplans,
    life: Lifecycle,
    speech: Option<Arc<crate::speech::SpeechRuntime>>,
    dialogue: Arc<crate::call::CallDialogue>,
    center: Arc<crate::agents::center::Center>,
) -> anyhow::Result<(Arc<SipService>, rsipstack::transaction::TransactionReceiver)> {
    let Lifecycle {
        gate,
        stop,
        hangup_all,
    } = life;
    let transport = TransportLayer::new(stop.child_token());
    let udp = tokio::net::UdpSocket::bind(config.sip)
        .await
        .with_context(|| format!("cannot bind SIP/UDP on {}", config.sip))?;
    let local = udp.local_addr()?;
    let trunk_sources = config.trunks.iter().flat_map(|t| t.addresses.clone());
    let limits = guard::SourceLimits::new(config.sip_rates, trunk_sources.collect());
    let guard = Arc::new(guard::Guard::new(limits));
    let socket = guard::GuardedSocket::new(udp, guard.clone());
    let conn = UdpConnection::attach(
        UdpInner {
            conn: Arc::new(socket),
            addr: SipAddr {
                r#type: Some(rsipstack::sip::transport::Transport::Udp),
                addr: local.into(),
            },
        },
        // Behind 1:1 NAT the Via of what kefu sends names the public address.
        config
            .advertised_address
            .map(|ip| SocketAddr::new(ip, local.port())),
        Some(stop.child_token()),
    )
    .await;
    transport.add_transport(conn.into());
    // TCP is accepted by kefu, not the stack, so that it passes the same guard.
    let tcp = if config.sip_tcp {
        let listener = tokio::net::TcpListener::bind(local)
            .await
            .with_context(|| format!("cannot bind SIP/TCP on {local}"))?;
        Some(listener)
    } else {
        None
    };
    let endpoint = EndpointBuilder::new()
        .with_user_agent(concat!("kefu/", env!("CARGO_PKG_VERSION")))
        .with_transport_layer(transport)
        .with_cancel_token(stop.child_token())
        .build();
    let incoming = endpoint
        .incoming_transactions()
        .map_err(|e| anyhow::anyhow!("SIP endpoint: {e}"))?;
    let inner = endpoint.inner.clone();
    if let Some(listener) = tcp {
        let openings = stream::Openings::new(guard);
        tokio::spawn(stream::serve(
            listener,
            inner.clone(),
            openings,
            stop.child_token(),
        ));
    }
    tokio::spawn(async move { endpoint.serve().await });
    let (first, last) = config.rtp_ports;
    let dialog_layer = Arc::new(DialogLayer::new(inner));
    let ports = PortPool::new(first, last);
    let phones = Arc::new(crate::agents::Phones::new(
        &config.sip_realm,
        &config.sip_digest,
    ));
    let staff = Arc::new(crate::call::transfer::Staff {
        center,
        phones: phones.clone(),
        softphones: Arc::default(),
        dialer: Arc::new(crate::call::leg::Dialer {
            dialog_layer: dialog_layer.clone(),
            local,
            ports: ports.clone(),
            advertised: config.advertised_address,
        }),
        claims: std::sync::OnceLock::new(),
    });
    let service = Arc::new(SipService {
        dialog_layer,
        ports,
        phones,
        staff,
        feature_plans: tokio::sync::OnceCell::new(),
        config,
        dialplans,
        gate,
        hangup_all,
        speech,
        dialogue,
        local,
        refreshes: std::sync::Mutex::default(),
    });
    Ok((service, incoming))
}

impl SipService {
    /// The session timer an INVITE asks for (RFC 4028), registered so its
    /// refreshes are noted; Err(Min-SE) when its interval is too short.
    fn session_timer(
        &self,
        invite: &rsipstack::sip::Request,
    ) -> Result<Option<(SessionTimer, Arc<Refreshed>)>, u32> {
        let values = |name: &str| -> Vec<&str> {
            invite
                .headers
                .iter()
                .filter(|h| h.name().eq_ignore_ascii_case(name))
                .map(|h| h.value())
                .collect()
        };
        // Compact forms (k, x) were made canonical by the guard.
        let supports = values("Supported")
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("timer"));
        let expires = values("Session-Expires").first().copied();
        let min_se = values("Min-SE").first().copied();
        let Some(timer) = session_timer::negotiate(expires, min_se, supports)? else {
            return Ok(None);
        };
        let refreshed = Arc::new(Refreshed::default());
        let call_id = invite
            .call_id_header()
            .map(|c| c.value().to_string())
            .unwrap_or_default();
        let mut calls = crate::lock(&self.refreshes);
        calls.retain(|_, w| w.strong_count() > 0);
        calls.insert(call_id, Arc::downgrade(&refreshed));
        Ok(Some((timer, refreshed)))
    }

    /// A re-INVITE or UPDATE in a call's dialog refreshes its session.
    fn refreshed(&self, request: &rsipstack::sip::Request) {
        let Ok(call_id) = request.call_id_header() else {
            return;
        };
        if let Some(r) = crate::lock(&self.refreshes)
            .get(call_id.value())
            .and_then(Weak::upgrade)
        {
            r.now();
        }
    }

    /// The caller's number: the P-Asserted-Identity's when the call came from
    /// a trunk trusted to assert it (`trust_identity`), else the From's user.
    fn caller(&self, invite: &rsipstack::sip::Request, trunk: Option<&str>) -> String {
        use rsipstack::sip::prelude::HeadersExt;
        let trusted = trunk.is_some_and(|name| {
            self.config
                .trunks
                .iter()
                .any(|t| t.name == name && t.trust_identity)
        });
        let asserted = trusted
            .then(|| invite.p_asserted_identity_header())
            .flatten()
            .and_then(|h| identity::asserted(h.value()));
        asserted.unwrap_or_else(|| {
            invite
                .from_header()
                .ok()
                .and_then(|f| f.uri().ok())
                .and_then(|u| u.user().map(str::to_string))
                .unwrap_or_default()
        })
    }
}

/// 422 (RFC 4028): the session interval asked for is under `min` seconds.
async fn interval_too_small(tx: &mut Transaction, min: u32) -> rsipstack::Result<()> {
    tx.reply_with(
        StatusCode::SessionIntervalTooSmall,
        vec![Header::Other("Min-SE".into(), min.to_string())],
        None,
    )
    .await
}

/// Where a request came from, and over which transport ("udp" or "tcp": kefu
/// listens on those only, so a reliable connection is TCP).
fn origin(tx: &Transaction, local: SocketAddr) -> (SocketAddr, &'static str) {
    let source = tx
        .connection
        .as_ref()
        .and_then(|c| c.get_remote_addr())
        .and_then(|a| a.get_socketaddr().ok())
        .unwrap_or(local);
    let transport = match &tx.connection {
        Some(c) if c.is_reliable() => "tcp",
        _ => "udp",
    };
    (source, transport)
}

impl SipService {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The dialog layer calls' agent legs and dial-outs go through.
    pub fn dialog_layer(&self) -> Arc<DialogLayer> {
        self.dialog_layer.clone()
    }

    /// Whether an INVITE from this address is taken: see [`Config::trunk_admits`];
    /// registered agents' phones may always call.
    fn admits(&self, ip: std::net::IpAddr) -> bool {
        self.config.trunk_admits(ip)
            || self
                .phones
                .registrar
                .lock()
                .is_ok_and(|r| r.has_source(ip, std::time::Instant::now()))
    }

    /// Routes incoming requests until the endpoint stops.
    pub async fn run(self: Arc<Self>, mut incoming: rsipstack::transaction::TransactionReceiver) {
        while let Some(tx) = incoming.recv().await {
            let this = self.clone();
            tokio::spawn(async move { this.route(tx).await });
        }
    }

    async fn route(self: Arc<Self>, mut tx: Transaction) {
        let has_to_tag = tx
            .original
            .to_header()
            .ok()
            .and_then(|t| t.tag().ok().flatten())
            .is_some();
        let method = tx.original.method;
        if (has_to_tag || !matches!(method, Method::Invite | Method::Options))
            && let Some(Dialog::Invite(mut dialog)) = self.dialog_layer.match_dialog(&tx)
        {
            if matches!(method, Method::Invite | Method::Update) {
                self.refreshed(&tx.original);
            }
            if let Err(e) = dialog.handle(&mut tx).await {
                tracing::debug!(error = %e, %method, "in-dialog request failed");
            }
            return;
        }
        let result = match method {
            Method::Invite if !has_to_tag => self.new_call(tx).await,
            // A draining node says so to the load balancer's probes, which then
            // send it no new calls (its live calls go on).
            Method::Options if self.gate.is_draining() => {
                tx.reply_with(
                    StatusCode::ServiceUnavailable,
                    vec![Header::Other("Retry-After".into(), "60".into())],
                    None,
                )
                .await
            }
            Method::Options => {
                tx.reply_with(
                    StatusCode::OK,
                    vec![
                        Header::Other("Allow".into(), ALLOW.into()),
                        Header::Other(
                            "Accept".into(),
                            "application/sdp, application/dtmf-relay, application/dtmf".into(),
                        ),
                    ],
                    None,
                )
                .await
            }
            Method::Ack => Ok(()),
            Method::Register if !has_to_tag => {
                let (source, transport) = origin(&tx, self.local);
                register::handle(
                    &mut tx,
                    &self.phones,
                    &self.dialogue.store,
                    source,
                    transport,
                )
                .await
            }
            Method::Subscribe
            | Method::Publish
            | Method::Message
            | Method::Refer
            | Method::Notify
                if !has_to_tag =>
            {
                tx.reply_with(
                    StatusCode::MethodNotAllowed,
                    vec![Header::Other("Allow".into(), ALLOW.into())],
                    None,
                )
                .await
            }
            _ => tx.reply(StatusCode::CallTransactionDoesNotExist).await,
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, %method, "cannot answer SIP request");
        }
    }

    async fn reject(
        tx: &mut Transaction,
        status: StatusCode,
        warning: &str,
    ) -> rsipstack::Result<()> {
        let mut headers = vec![Header::Other(
            "Warning".into(),
            format!("399 kefu \"{warning}\""),
        )];
        if status == StatusCode::ServiceUnavailable {
            headers.push(Header::Other("Retry-After".into(), "5".into()));
        }
        tx.reply_with(status, headers, None).await
    }

    /// An agent's phone dials a feature code: once authenticated like a REGISTER,
    /// the agent is set available or away, and the call plays the confirmation.
    /// None when the request has been answered here (challenge, refusal).
    async fn agent_state(
        &self,
        tx: &mut Transaction,
        available: bool,
    ) -> rsipstack::Result<Option<Arc<crate::dialplan::Dialplan>>> {
        let (source, _) = origin(tx, self.local);
        let extension = tx
            .original
            .from_header()
            .ok()
            .and_then(|f| f.uri().ok())
            .and_then(|u| u.user().map(str::to_string))
            .unwrap_or_default();
        let Some(agent) =
            register::authenticate(tx, &self.phones, &self.dialogue.store, source, &extension)
                .await?
        else {
            return Ok(None);
        };
        let center = &self.staff.center;
        center.add_agent(&agent.id, &agent.queues, &agent.skills);
        center.set_available(&agent.id, available);
        tracing::info!(%extension, state = ?center.state(&agent.id), "agent state set by feature code");
        let plans = self
            .feature_plans
            .get_or_init(|| async {
                let (audio, prompts) = (
                    crate::dialplan::AudioRoot(self.config.audio.clone()),
                    self.dialogue.prompts.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    let load = |available: bool| {
                        let (label, text) = feature_plan(available);
                        crate::dialplan::load_text(std::path::Path::new(label), &text, &audio, &prompts)
                            .map_err(|e| tracing::error!(error = %e, "cannot load the feature-code confirmation"))
                            .ok()
                    };
                    Some([load(true)?, load(false)?])
                })
                .await
                .ok()
                .flatten()
            })
            .await;
        match plans {
            Some([on, off]) => Ok(Some(if available { on.clone() } else { off.clone() })),
            None => {
                // The state is set; only the spoken confirmation is missing.
                Self::reject(
                    tx,
                    StatusCode::ServiceUnavailable,
                    "state set; no confirmation prompt",
                )
                .await?;
                Ok(None)
            }
        }
    }

    /// A call slot for the INVITE on `tx`, or None once it was refused (403 from
    /// a source that is neither a trunk nor an agent, 503 at the call limit or
    /// while draining).
    async fn enter(self: &Arc<Self>, tx: &mut Transaction) -> rsipstack::Result<Option<CallSlot>> {
        let (source, _) = origin(tx, self.local);
        if !self.admits(source.ip()) {
            tracing::warn!(%source, "INVITE refused: not from a configured trunk or agent");
            crate::metrics::metrics().calls_refused.inc();
            Self::reject(
                tx,
                StatusCode::Forbidden,
                "calls are taken from the configured trunks only",
            )
            .await?;
            return Ok(None);
        }
        let Some(slot) = self.gate.try_enter(self.config.max_calls) else {
            let why = if self.gate.is_draining() {
                "shutting down"
            } else {
                "call limit reached"
            };
            tracing::warn!(
                reason = why,
                active = self.gate.active(),
                "INVITE refused with 503"
            );
            crate::metrics::metrics().calls_refused.inc();
            Self::reject(tx, StatusCode::ServiceUnavailable, why).await?;
            return Ok(None);
        };
        Ok(Some(slot))
    }

    async fn new_call(self: &Arc<Self>, mut tx: Transaction) -> rsipstack::Result<()> {
        let invite_at = chrono::Utc::now();
        let Some(slot) = self.enter(&mut tx).await? else {
            return Ok(());
        };
        let (source, _) = origin(&tx, self.local);
        let called = tx.original.uri.user().unwrap_or_default().to_string();
        let feature = FEATURE_CODES
            .iter()
            .find(|(code, _)| *code == called)
            .map(|(_, available)| *available);
        let plan = if let Some(available) = feature {
            match self.agent_state(&mut tx, available).await? {
                Some(plan) => Some(plan),
                None => return Ok(()),
            }
        } else {
            self.dialplans.current().lookup(&called)
        };
        let Some(plan) = plan else {
            return Self::reject(
                &mut tx,
                StatusCode::NotFound,
                &format!("no dialplan answers {called:?}"),
            )
            .await;
        };
        let negotiated = match sdp::negotiate(&tx.original.body)
            .and_then(|n| sdp::check_target(n.remote, source.ip()).map(|()| n))
        {
            Ok(n) => n,
            Err(e) => {
                let why = if tx.original.body.is_empty() {
                    "an SDP offer in the INVITE is required".to_string()
                } else {
                    e.to_string()
                };
                return Self::reject(&mut tx, StatusCode::NotAcceptableHere, &why).await;
            }
        };
        let session_timer = match self.session_timer(&tx.original) {
            Ok(t) => t,
            Err(min) => return interval_too_small(&mut tx, min).await,
        };
        let socket = match self.ports.bind(self.local.ip()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "INVITE refused: no RTP port");
                return Self::reject(
                    &mut tx,
                    StatusCode::ServiceUnavailable,
                    "no media port free",
                )
                .await;
            }
        };
        let (state_tx, state_rx) = self.dialog_layer.new_dialog_state_channel();
        let contact = rsipstack::sip::Uri::try_from(
            format!("sip:kefu@{}", self.staff.dialer.public()).as_str(),
        )
        .ok();
        let dialog = match self
            .dialog_layer
            .get_or_create_server_invite(&tx, state_tx, None, contact)
        {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot create dialog");
                return tx.reply(StatusCode::ServerInternalError).await;
            }
        };
        let (source, transport) = origin(&tx, self.local);
        let (dtmf, trunk) = self.config.dtmf_for(source.ip());
        let setup = CallSetup {
            call_id: tx
                .original
                .call_id_header()
                .map(|c| c.value().to_string())
                .unwrap_or_default(),
            caller: self.caller(&tx.original, trunk),
            called,
            trunk: trunk.map(str::to_string),
            transport,
            source,
            invite_at,
            plan,
            negotiated,
            socket: crate::channel::rtp::socket::RtpSocket::new(socket),
            dtmf,
            rtp_timeout: self.config.rtp_timeout,
            audio_root: self.config.audio.clone(),
            signal: call::signal::Signal::Sip {
                dialog: dialog.clone(),
                states: state_rx,
            },
            hangup_all: self.hangup_all.clone(),
            speech: self.speech.clone(),
            dialogue: self.dialogue.clone(),
            dialog_layer: self.dialog_layer.clone(),
            staff: self.staff.clone(),
            customer: None,
            session_timer,
        };
        // The dialog answers retransmissions, CANCEL and the ACK on its transaction.
        let mut invite_dialog = dialog;
        tokio::spawn(async move {
            if let Err(e) = invite_dialog.handle(&mut tx).await {
                tracing::debug!(error = %e, "INVITE transaction ended with an error");
            }
        });
        self.gate.tracker.spawn(async move {
            let _slot = slot;
            call::run(setup).await;
        });
        Ok(())
    }
}
