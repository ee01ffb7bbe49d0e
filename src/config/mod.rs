//! Settings: built-in defaults, then `kefu.toml`, then command-line flags.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::media::dtmf::DtmfMode;

mod queue;
pub mod sms;
pub mod speech;
pub mod webrtc;
pub mod wecom;
pub mod widget;

/// `[voices]`: languages checked here; the voices' names when the server starts
/// (`server::spoken_prompts`), which knows the speech module.
fn voices(
    table: Option<std::collections::BTreeMap<String, String>>,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let table = table.unwrap_or_default();
    if let Some(language) = table.keys().find(|l| !matches!(l.as_str(), "zh" | "en")) {
        bail!("[voices]: unknown language {language:?} (zh or en)");
    }
    Ok(table)
}

/// `cluster_node`: a name of letters, digits, `-` and `_`, on PostgreSQL.
fn cluster_node(node: Option<String>, database: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(node) = node else {
        return Ok(None);
    };
    if node.is_empty()
        || node.len() > 64
        || !node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("`cluster_node` = {node:?}: a name of letters, digits, '-' and '_'");
    }
    if !database.is_some_and(|d| d.starts_with("postgres")) {
        bail!("`cluster_node` needs a PostgreSQL `database` shared by every node");
    }
    Ok(Some(node))
}

/// `kefu.toml`. Every field is optional; unknown fields are an error so a typo is
/// not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub sip: Option<SocketAddr>,
    pub sip_tcp: Option<bool>,
    /// The digest realm agents' phones register in (default "kefu").
    pub sip_realm: Option<String>,
    /// Digest algorithms offered to registering phones, best first
    /// (default ["SHA-256", "MD5"]; phones use the first they support).
    pub sip_digest: Option<Vec<String>>,
    pub http: Option<SocketAddr>,
    pub dialplans: Option<PathBuf>,
    pub audio: Option<PathBuf>,
    pub data: Option<PathBuf>,
    /// Where `deploy/models.sh` put the speech models.
    pub models: Option<PathBuf>,
    /// Whisper model for `listen` nodes: base, base-q8_0, tiny.en, tiny.en-q8_0.
    pub asr_model: Option<String>,
    /// Utterances recognised at once (default and most: one per core).
    pub asr_workers: Option<usize>,
    pub max_calls: Option<usize>,
    /// RTP port range, "20000-29999".
    pub rtp_ports: Option<String>,
    /// Hang up a call that sends no RTP for this long, "60s".
    pub rtp_timeout: Option<String>,
    /// How long SIGTERM waits for live calls, "30s".
    pub drain_timeout: Option<String>,
    pub dtmf: Option<DtmfMode>,
    /// With `[[trunk]]`s configured, INVITEs are taken from them and from registered
    /// agents' phones only; `true` takes them from anyone (labs, demos).
    pub sip_open: Option<bool>,
    /// What one source that is not a trunk may send: SIP datagrams per second
    /// (default 50, twice that at once) and new calls per second (default 5, four
    /// times that at once); the rest is dropped unread.
    pub sip_datagrams_per_second: Option<u32>,
    pub sip_invites_per_second: Option<u32>,
    /// HTTP connections open at once, in all (default 4096).
    pub http_connections: Option<usize>,
    /// HTTP connections open at once from one client address (default 64; one more
    /// closes that client's oldest idle one).
    pub http_connections_per_client: Option<usize>,
    /// How long a client has to send a request's headers, "10s".
    pub http_header_timeout: Option<String>,
    /// How long a client has to send a request's body once its headers are in, "30s".
    pub http_body_timeout: Option<String>,
    /// What one client address may do on the public routes: new conversations and
    /// messages per minute, verification codes per hour, sign-in attempts per minute.
    pub conversations_per_minute: Option<u32>,
    pub messages_per_minute: Option<u32>,
    pub codes_per_hour: Option<u32>,
    pub sign_ins_per_minute: Option<u32>,
    /// Verification codes texted per hour in all (SMS pumping costs money).
    pub sms_codes_per_hour: Option<u32>,
    /// How often dialplans are checked for edits, "1s".
    pub reload_interval: Option<String>,
    /// Knowledge-base directory.
    pub kb: Option<PathBuf>,
    /// Live text conversations kept (the least recently active goes first).
    pub max_conversations: Option<usize>,
    /// Re-rank with the sentence-embedding model (default true); false: words only.
    pub semantic: Option<bool>,
    /// Where example-question embeddings are kept between runs
    /// (default DATA/embeddings.bin).
    pub embed_cache: Option<PathBuf>,
    /// How long the start waits for the knowledge base's examples to be embedded,
    /// "20s"; longer, and it serves matching by words until they are.
    pub semantic_wait: Option<String>,
    /// Where rendered speech (text prompts, answers) is kept between runs
    /// (default DATA/tts-cache).
    pub tts_cache: Option<PathBuf>,
    /// The voice text is spoken in, by dialplan language, where a plan names none:
    /// `[voices]` with `zh = "kokoro-zh:/path/to/voice.bin"`, `en = "espeak-en"`
    /// (defaults: kokoro-zh and en_US-joe-medium).
    pub voices: Option<std::collections::BTreeMap<String, String>>,
    /// The token set in the WeChat Official Account's server configuration.
    pub wechat_token: Option<String>,
    /// The account's AppID and AppSecret, for agents' answers (customer-service
    /// messages).
    pub wechat_appid: Option<String>,
    pub wechat_secret: Option<String>,
    /// The account's EncodingAESKey (43 characters): safe mode, messages encrypted
    /// both ways (needs `wechat_appid`).
    pub wechat_aes_key: Option<String>,
    /// Where WeChat's API is ("https://api.weixin.qq.com", or a proxy).
    pub wechat_api: Option<String>,
    /// Where SMS replies are POSTed (form fields To, From, Body), in the style of
    /// common SMS gateways.
    pub sms_outbound_url: Option<String>,
    /// Alibaba Cloud's SMS API instead of a gateway URL.
    pub sms_aliyun: Option<sms::AliyunSms>,
    /// Tencent Cloud's SMS API instead of a gateway URL.
    pub sms_tencent: Option<sms::TencentSms>,
    /// The number SMS replies come from.
    pub sms_number: Option<String>,
    /// A secret the SMS gateway sends with every inbound message (`?token=` on the
    /// webhook URL, or an X-Kefu-Token header); without it anyone can post SMS.
    pub sms_inbound_token: Option<String>,
    /// Gone: API tokens are made with `kefu tokens create` and stored hashed.
    pub api_tokens: Option<toml::Value>,
    /// Mark the session cookie `Secure` (default true: browsers send it over
    /// HTTPS, and to localhost); false only for plain HTTP on a trusted network.
    pub secure_cookies: Option<bool>,
    /// How long a sign-in lasts, "12h" (default).
    pub session_ttl: Option<String>,
    /// Reverse proxies in front of the HTTP port whose X-Forwarded-For is believed.
    pub trusted_proxies: Option<Vec<IpAddr>>,
    /// The database: "sqlite://PATH" (default DATA/kefu.db) or "postgres://...".
    pub database: Option<String>,
    /// Seal customer data in the database (default true).
    pub encryption: Option<bool>,
    /// The keyring (default DATA/kefu.keys); `KEFU_KEYS` overrides it.
    pub key_file: Option<PathBuf>,
    /// Where scheduled backups go (default DATA/backups).
    pub backup_dir: Option<PathBuf>,
    /// How often to back up, "24h" (default), or "off".
    pub backup_every: Option<String>,
    /// Scheduled backups kept (default 7).
    pub backup_keep: Option<usize>,
    /// Delete conversation turns and call details older than this many days
    /// (default: keep them).
    pub retention_days: Option<u32>,
    #[serde(default, rename = "trunk")]
    pub trunks: Vec<Trunk>,
    #[serde(default, rename = "queue")]
    pub queues: Vec<QueueFile>,
    /// Browser calls.
    pub webrtc: Option<webrtc::WebRtcFile>,
    /// The embeddable chat widget.
    pub widget: Option<widget::WidgetFile>,
    /// WeCom customer service (微信客服).
    pub wecom: Option<wecom::Wecom>,
    /// Remote speech engines (`[[speech_service]]`).
    #[serde(default, rename = "speech_service")]
    pub speech_services: Vec<speech::SpeechServiceFile>,
    /// Which service hears each language (`[recognition]`).
    pub recognition: Option<std::collections::BTreeMap<String, String>>,
    /// Serve `/v1/audio/*` from this node's models, loading them even if no plan listens.
    pub serve_speech: Option<bool>,
    /// This node's name in a cluster (agents shared with the other nodes on the
    /// same PostgreSQL database).
    pub cluster_node: Option<String>,
    /// The address SIP headers and SDP name instead of the bound one, behind 1:1
    /// NAT (a cloud VM's public address; Asterisk's `external_media_address`).
    pub advertised_address: Option<IpAddr>,
}

/// An agent queue (`[[queue]]`); a queue used but not listed has the defaults.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueFile {
    pub name: String,
    /// longest-idle (default), round-robin, ring-all or skills.
    pub strategy: Option<crate::agents::queue::Strategy>,
    /// Give up (voicemail, callback, the ticket stays open) after this, "5m".
    pub max_wait: Option<String>,
    /// How long an offer rings before the next agent, "20s".
    pub ring_timeout: Option<String>,
    /// Time after a conversation before the next offer, "10s".
    pub wrap_up: Option<String>,
    /// How often callers hear their position, "60s", or "off".
    pub announce_every: Option<String>,
    /// Hold music, a WAV file under `audio/` ("hold.wav").
    pub hold_music: Option<String>,
    /// Record calls bridged from this queue (stored sealed), false by default.
    pub record: Option<bool>,
    /// A ticket of normal priority from this queue is due within this, "1d" by
    /// default (urgent: a sixth of it, high: half, low: three times).
    pub sla: Option<String>,
}

/// A SIP peer known by its source addresses, with its own DTMF mode.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trunk {
    pub name: String,
    pub addresses: Vec<IpAddr>,
    #[serde(default)]
    pub dtmf: DtmfMode,
    /// Where calls kefu places go (callbacks): "host:port"; by default the
    /// first address, port 5060.
    pub outbound: Option<SocketAddr>,
    /// The number kefu calls from (the From of calls it places), "kefu" if unset.
    pub caller_id: Option<String>,
    /// The trunk asserts who calls (RFC 3325): the caller's number is taken
    /// from its P-Asserted-Identity (else the From). Default false.
    #[serde(default)]
    pub trust_identity: bool,
}

impl Trunk {
    /// Where calls kefu places through this trunk go.
    pub fn outbound(&self) -> Option<SocketAddr> {
        self.outbound
            .or_else(|| self.addresses.first().map(|ip| SocketAddr::new(*ip, 5060)))
    }
}

/// How much one source that is not a trunk may send (kefu.toml can change them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceRates {
    /// SIP datagrams per second (requests, responses, keep-alives), twice that at once.
    pub datagrams: u32,
    /// INVITEs that start a call, per second, four times that at once.
    pub invites: u32,
}

impl Default for SourceRates {
    fn default() -> Self {
        // A phone sends a handful of datagrams per call and a REGISTER or OPTIONS
        // every few seconds; a small PBX behind one address a few calls a second.
        Self {
            datagrams: 50,
            invites: 5,
        }
    }
}

/// What the HTTP listener allows (kefu.toml: http_connections, http_per_client,
/// http_header_timeout, http_body_timeout).
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Connections open at once, in all.
    pub connections: usize,
    /// Connections open at once from one client address.
    pub per_client: usize,
    /// How long a client has to send a request's headers (and how long an idle
    /// connection stays open waiting for the next request).
    pub header_timeout: Duration,
    /// How long a client has to send a request's body once its headers are in.
    pub body_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            connections: 4096,
            per_client: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// How much each client address may do (kefu.toml can raise them for load tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rates {
    /// New conversations per minute.
    pub conversations: u32,
    /// Messages per minute.
    pub messages: u32,
    /// Verification codes asked for per hour.
    pub codes: u32,
    /// Sign-in attempts per minute.
    pub sign_ins: u32,
}

impl Default for Rates {
    fn default() -> Self {
        Self {
            conversations: 20,
            messages: 60,
            codes: 5,
            sign_ins: 20,
        }
    }
}

/// The AES key of WeChat's safe mode from the account's EncodingAESKey (43
/// characters of base64).
pub fn encoding_aes_key(encoding_aes_key: &str) -> Result<[u8; 32], String> {
    use base64::Engine;
    let bad = || "`wechat_aes_key` must be the account's 43-character EncodingAESKey".to_string();
    if encoding_aes_key.len() != 43 {
        return Err(bad());
    }
    // Keys are 43 random characters: the last one's spare bits are often set,
    // which a strict decoder refuses.
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let bytes = lenient
        .decode(format!("{encoding_aes_key}="))
        .map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
}

/// The settings `kefu serve` runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub sip: SocketAddr,
    pub sip_tcp: bool,
    pub sip_realm: String,
    pub sip_digest: Vec<crate::agents::digest::Algorithm>,
    pub http: SocketAddr,
    pub dialplans: PathBuf,
    pub audio: PathBuf,
    pub data: PathBuf,
    pub models: PathBuf,
    pub asr_model: String,
    pub asr_workers: usize,
    pub max_calls: usize,
    pub rtp_ports: (u16, u16),
    pub rtp_timeout: Duration,
    pub sip_open: bool,
    pub sip_rates: SourceRates,
    pub http_limits: HttpLimits,
    pub rates: Rates,
    pub sms_codes_per_hour: u32,
    pub drain_timeout: Duration,
    pub dtmf: DtmfMode,
    pub reload_interval: Duration,
    pub kb: PathBuf,
    pub max_conversations: usize,
    pub semantic: bool,
    pub embed_cache: Option<PathBuf>,
    pub semantic_wait: Duration,
    pub tts_cache: Option<PathBuf>,
    /// Default voices by language (`[voices]`).
    pub voices: std::collections::BTreeMap<String, String>,
    pub wechat_token: Option<String>,
    pub wechat_appid: Option<String>,
    pub wechat_secret: Option<String>,
    pub wechat_aes_key: Option<String>,
    pub wechat_api: String,
    /// How SMS messages are sent (a gateway URL or a cloud's SMS API).
    pub sms_out: Option<sms::SmsOut>,
    pub sms_number: Option<String>,
    pub sms_inbound_token: Option<String>,
    pub secure_cookies: bool,
    pub session_ttl: Duration,
    pub trusted_proxies: Vec<IpAddr>,
    /// None: SQLite at DATA/kefu.db.
    pub database: Option<String>,
    pub encryption: bool,
    /// None: DATA/kefu.keys.
    pub key_file: Option<PathBuf>,
    /// None: DATA/backups.
    pub backup_dir: Option<PathBuf>,
    /// None: no scheduled backups.
    pub backup_every: Option<Duration>,
    pub backup_keep: usize,
    pub retention_days: Option<u32>,
    pub trunks: Vec<Trunk>,
    pub queues: Vec<crate::agents::queue::QueueConfig>,
    pub webrtc: webrtc::WebRtc,
    pub widget: widget::Widget,
    pub wecom: Option<wecom::Wecom>,
    pub speech_services: Vec<speech::SpeechService>,
    /// Language → the service that hears it first (only remote ones).
    pub recognition: std::collections::BTreeMap<String, String>,
    pub serve_speech: bool,
    pub cluster_node: Option<String>,
    pub advertised_address: Option<IpAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            sip: SocketAddr::from(([127, 0, 0, 1], 5060)),
            sip_tcp: true,
            sip_realm: "kefu".into(),
            sip_digest: crate::agents::digest::Algorithm::OFFERED.to_vec(),
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            dialplans: "dialplans".into(),
            audio: "audio".into(),
            data: "data".into(),
            models: "models".into(),
            asr_model: "base-q8_0".into(),
            asr_workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_calls: 1000,
            rtp_ports: (20000, 29999),
            rtp_timeout: Duration::from_secs(60),
            sip_open: false,
            sip_rates: Default::default(),
            http_limits: HttpLimits::default(),
            rates: Rates::default(),
            sms_codes_per_hour: 200,
            drain_timeout: Duration::from_secs(30),
            dtmf: DtmfMode::Auto,
            reload_interval: Duration::from_secs(1),
            kb: "dialplans/kb".into(),
            max_conversations: 10_000,
            semantic: true,
            embed_cache: None,
            semantic_wait: Duration::from_secs(20),
            tts_cache: None,
            voices: Default::default(),
            wechat_token: None,
            wechat_appid: None,
            wechat_secret: None,
            wechat_aes_key: None,
            wechat_api: "https://api.weixin.qq.com".into(),
            sms_out: None,
            sms_number: None,
            sms_inbound_token: None,
            secure_cookies: true,
            session_ttl: Duration::from_secs(12 * 3600),
            trusted_proxies: Vec::new(),
            database: None,
            encryption: true,
            key_file: None,
            backup_dir: None,
            backup_every: Some(Duration::from_secs(24 * 3600)),
            backup_keep: 7,
            retention_days: None,
            trunks: Vec::new(),
            queues: Vec::new(),
            webrtc: webrtc::WebRtc::default(),
            widget: widget::Widget::default(),
            wecom: None,
            speech_services: Vec::new(),
            recognition: Default::default(),
            serve_speech: false,
            cluster_node: None,
            advertised_address: None,
        }
    }
}

fn duration(field: &str, text: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(text)
        .with_context(|| format!("`{field}` = {text:?} is not a duration; write it like \"30s\""))
}

impl Config {
    /// Reads `path` if given (an explicit path must exist) or `./kefu.toml` if present.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from("kefu.toml"), false),
        };
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<FileConfig>(&text).map_err(|e| {
                let (line, col) = e
                    .span()
                    .map(|s| crate::source::Source::new(&path, &text).position(s.start))
                    .unwrap_or((1, 1));
                anyhow::anyhow!("{}:{line}:{col}: {}", path.display(), e.message())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                FileConfig::default()
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Self::default().merge(file)
    }

    fn merge(mut self, mut f: FileConfig) -> anyhow::Result<Self> {
        self.merge_messaging(&mut f)?;
        self.merge_machines(&mut f)?;
        macro_rules! take {
            ($($field:ident),*) => { $(if let Some(v) = f.$field { self.$field = v; })* };
        }
        take!(
            sip,
            sip_tcp,
            sip_realm,
            http,
            dialplans,
            audio,
            data,
            models,
            asr_model,
            asr_workers,
            max_calls,
            dtmf,
            kb,
            max_conversations,
            semantic,
            secure_cookies,
            trusted_proxies,
            encryption,
            backup_keep
        );
        self.database = f.database.or(self.database);
        self.key_file = f.key_file.or(self.key_file);
        self.backup_dir = f.backup_dir.or(self.backup_dir);
        self.retention_days = f.retention_days.or(self.retention_days);
        if let Some(every) = f.backup_every {
            self.backup_every = match every.as_str() {
                "off" | "never" => None,
                t => Some(duration("backup_every", t)?),
            };
        }
        self.embed_cache = f.embed_cache.or(self.embed_cache);
        self.tts_cache = f.tts_cache.or(self.tts_cache);
        if self.asr_workers == 0 {
            bail!("`asr_workers` must be at least 1");
        }
        if let Some(r) = f.rtp_ports {
            self.rtp_ports = parse_range(&r)?;
        }
        macro_rules! take_duration {
            ($($field:ident),*) => {
                $(if let Some(t) = &f.$field { self.$field = duration(stringify!($field), t)?; })*
            };
        }
        take_duration!(rtp_timeout, drain_timeout, semantic_wait, reload_interval);
        if let Some(t) = f.session_ttl {
            self.session_ttl = duration("session_ttl", &t)?;
            if self.session_ttl < Duration::from_secs(60) {
                bail!("`session_ttl` must be at least 1 minute");
            }
        }
        if f.api_tokens.is_some() {
            bail!(
                "`api_tokens` is no longer read: API tokens are stored hashed now. \
                 Remove it and make one with `kefu tokens create NAME --role integrator`"
            );
        }
        if let Some(names) = f.sip_digest {
            self.sip_digest = names
                .iter()
                .map(|n| {
                    crate::agents::digest::Algorithm::parse(n).with_context(|| {
                        format!("`sip_digest`: unknown algorithm {n:?}; use \"SHA-256\" or \"MD5\"")
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            if self.sip_digest.is_empty() {
                bail!("`sip_digest` must offer at least one algorithm");
            }
        }
        self.trunks = f.trunks;
        if let Some(w) = f.webrtc.take() {
            self.webrtc = self.webrtc.clone().merge(w)?;
        }
        if let Some(w) = f.widget.take() {
            self.widget = widget::Widget::from_file(w)?;
        }
        if let Some(open) = f.sip_open {
            self.sip_open = open;
        }
        let sr = &mut self.sip_rates;
        sr.datagrams = f.sip_datagrams_per_second.unwrap_or(sr.datagrams).max(1);
        sr.invites = f.sip_invites_per_second.unwrap_or(sr.invites).max(1);
        if let Some(n) = f.http_connections {
            self.http_limits.connections = n.max(1);
        }
        if let Some(n) = f.http_connections_per_client {
            self.http_limits.per_client = n.max(1);
        }
        let r = &mut self.rates;
        r.conversations = f.conversations_per_minute.unwrap_or(r.conversations);
        r.messages = f.messages_per_minute.unwrap_or(r.messages);
        r.codes = f.codes_per_hour.unwrap_or(r.codes);
        r.sign_ins = f.sign_ins_per_minute.unwrap_or(r.sign_ins);
        self.sms_codes_per_hour = f.sms_codes_per_hour.unwrap_or(self.sms_codes_per_hour);
        if let Some(t) = f.http_body_timeout {
            self.http_limits.body_timeout = duration("http_body_timeout", &t)?;
        }
        if let Some(t) = f.http_header_timeout {
            self.http_limits.header_timeout = duration("http_header_timeout", &t)?;
        }
        for q in f.queues {
            let name = q.name.trim().to_string();
            if name.is_empty() || self.queues.iter().any(|c| c.name == name) {
                bail!("[[queue]] names must be present and distinct: {name:?}");
            }
            let c = queue::queue_config(q)?;
            self.queues.push(c);
        }
        Ok(self)
    }

    /// The WeChat, WeCom and SMS settings of `f` (taken out of it).
    fn merge_messaging(&mut self, f: &mut FileConfig) -> anyhow::Result<()> {
        if let Some(w) = f.wecom.take() {
            self.wecom = Some(w.checked()?);
        }
        self.wechat_token = f.wechat_token.take().or(self.wechat_token.take());
        self.wechat_appid = f.wechat_appid.take().or(self.wechat_appid.take());
        self.wechat_secret = f.wechat_secret.take().or(self.wechat_secret.take());
        if let Some(key) = f.wechat_aes_key.take() {
            if self.wechat_appid.is_none() {
                bail!("`wechat_aes_key` needs `wechat_appid` (safe mode checks the AppID)");
            }
            encoding_aes_key(&key).map_err(anyhow::Error::msg)?;
            self.wechat_aes_key = Some(key);
        }
        if let Some(api) = f.wechat_api.take() {
            if !(api.starts_with("https://") || api.starts_with("http://")) {
                bail!("`wechat_api` must be an http(s) URL");
            }
            self.wechat_api = api;
        }
        let url = f.sms_outbound_url.take();
        let (aliyun, tencent) = (f.sms_aliyun.take(), f.sms_tencent.take());
        if url.is_some() || aliyun.is_some() || tencent.is_some() {
            self.sms_out = sms::sms_out(url, aliyun, tencent)?;
        }
        self.sms_number = f.sms_number.take().or(self.sms_number.take());
        self.sms_inbound_token = f.sms_inbound_token.take().or(self.sms_inbound_token.take());
        if self
            .sms_inbound_token
            .as_ref()
            .is_some_and(|t| t.len() < 16 || t.len() > 256)
        {
            bail!("`sms_inbound_token` must be 16 to 256 characters");
        }
        Ok(())
    }

    /// The database URL: `database`, or the SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| crate::store::sqlite_url(&self.data.join("kefu.db")))
    }

    pub fn key_path(&self) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| self.data.join("kefu.keys"))
    }

    /// The keyring, when encryption is on (an error that says how to fix a missing key).
    pub fn keyring(&self) -> anyhow::Result<Option<crate::store::crypto::Keyring>> {
        if !self.encryption {
            return Ok(None);
        }
        crate::store::crypto::Keyring::load(&self.key_path()).map(Some)
    }

    /// Opens the store this configuration names.
    pub async fn open_store(&self) -> anyhow::Result<crate::store::Store> {
        let keys = self.keyring()?;
        crate::store::Store::open(&self.database_url(), keys).await
    }

    /// The DTMF mode for a call from `source`.
    /// Whether a call may come from this address by configuration alone: from anyone
    /// while no trunk is configured (or `sip_open`), else from a trunk. (Registered
    /// agents' phones are let in by the SIP service, which knows them.)
    pub fn trunk_admits(&self, source: IpAddr) -> bool {
        self.sip_open
            || self.trunks.is_empty()
            || self.trunks.iter().any(|t| t.addresses.contains(&source))
    }

    /// The trunk calls kefu places go through (callbacks): the first one
    /// configured.
    pub fn dial_out_trunk(&self) -> Option<&Trunk> {
        self.trunks.first()
    }

    pub fn dtmf_for(&self, source: IpAddr) -> (DtmfMode, Option<&str>) {
        self.trunks
            .iter()
            .find(|t| t.addresses.contains(&source))
            .map_or((self.dtmf, None), |t| (t.dtmf, Some(t.name.as_str())))
    }
}

pub fn parse_range(text: &str) -> anyhow::Result<(u16, u16)> {
    let (a, b) = text
        .split_once('-')
        .with_context(|| format!("`rtp_ports` = {text:?}: write it like \"20000-29999\""))?;
    let (a, b): (u16, u16) = (
        a.trim()
            .parse()
            .with_context(|| format!("`rtp_ports`: {a:?} is not a port"))?,
        b.trim()
            .parse()
            .with_context(|| format!("`rtp_ports`: {b:?} is not a port"))?,
    );
    if a >= b || a < 1024 {
        bail!("`rtp_ports` = {text:?}: the first port must be 1024 or above and below the last");
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests;
