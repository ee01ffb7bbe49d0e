//! `[webrtc]` in kefu.toml: browser calls (the chat widget's call button).

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// `[webrtc]` as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebRtcFile {
    /// Take browser calls (default true).
    pub enabled: Option<bool>,
    /// The dialplan number a browser call reaches (default "kefu": the demo's
    /// Mandarin plan, also the plan for numbers no plan claims).
    pub number: Option<String>,
    /// STUN/TURN servers for both ends, `[[webrtc.ice_servers]]`.
    #[serde(default)]
    pub ice_servers: Vec<IceServer>,
    /// UDP ports the peer connections use, "40000-40999".
    pub udp_ports: Option<String>,
    /// The public addresses of a machine behind 1:1 NAT (a cloud VM), announced
    /// as host candidates instead of its private ones.
    pub public_ips: Option<Vec<IpAddr>>,
    /// Live browser calls one client address may hold (default 4).
    pub max_per_client: Option<usize>,
    /// How long ICE and DTLS may take before the call is dropped, "15s".
    pub connect_timeout: Option<String>,
}

/// One STUN or TURN server, as the browser's `RTCIceServer` names its fields.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credential: String,
}

/// Browser calls, checked.
#[derive(Clone, Debug)]
pub struct WebRtc {
    pub enabled: bool,
    pub number: String,
    pub ice_servers: Vec<IceServer>,
    pub udp_ports: (u16, u16),
    pub public_ips: Vec<IpAddr>,
    pub max_per_client: usize,
    pub connect_timeout: Duration,
}

impl Default for WebRtc {
    fn default() -> Self {
        Self {
            enabled: true,
            number: "kefu".into(),
            ice_servers: Vec::new(),
            udp_ports: (40000, 40999),
            public_ips: Vec::new(),
            max_per_client: 4,
            connect_timeout: Duration::from_secs(15),
        }
    }
}

impl WebRtc {
    pub fn merge(mut self, f: WebRtcFile) -> anyhow::Result<Self> {
        if let Some(e) = f.enabled {
            self.enabled = e;
        }
        if let Some(n) = f.number {
            self.number = n;
        }
        for server in &f.ice_servers {
            let known = |u: &String| {
                ["stun:", "stuns:", "turn:", "turns:"]
                    .iter()
                    .any(|p| u.starts_with(p))
            };
            if server.urls.is_empty() || !server.urls.iter().all(known) {
                bail!(
                    "[webrtc] ice_servers: each needs `urls` starting with stun:, stuns:, turn: or turns:"
                );
            }
        }
        self.ice_servers = f.ice_servers;
        if let Some(r) = f.udp_ports {
            self.udp_ports = super::parse_range(&r).context("[webrtc] udp_ports")?;
        }
        if let Some(ips) = f.public_ips {
            self.public_ips = ips;
        }
        if let Some(n) = f.max_per_client {
            if n == 0 {
                bail!("[webrtc] max_per_client must be at least 1");
            }
            self.max_per_client = n;
        }
        if let Some(t) = f.connect_timeout {
            self.connect_timeout = super::duration("[webrtc] connect_timeout", &t)?;
            if !(Duration::from_secs(2)..=Duration::from_secs(120)).contains(&self.connect_timeout)
            {
                bail!("[webrtc] connect_timeout must be between 2s and 2m");
            }
        }
        Ok(self)
    }
}
