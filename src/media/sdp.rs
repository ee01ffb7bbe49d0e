//! SDP offer/answer for G.711 audio with telephone-event (RFC 3264, RFC 4733).
//!
//! Parsing uses the `sdp` crate; the answer is written directly because it is a
//! fixed, small template.

use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

use crate::media::g711::Law;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SdpError {
    #[error("malformed SDP: {0}")]
    Malformed(String),
    #[error("no audio stream in the offer")]
    NoAudio,
    #[error("no common codec: kefu speaks PCMU (0) and PCMA (8) over RTP/AVP")]
    NoCodec,
    #[error("no connection address (c=) for the audio stream")]
    NoAddress,
    #[error("kefu does not send media to {0}: {1}")]
    Target(std::net::SocketAddr, &'static str),
}

/// What sort of address an SDP names, for [`check_target`].
fn scope(ip: std::net::IpAddr) -> Option<&'static str> {
    use std::net::IpAddr;
    match ip {
        _ if ip.is_loopback() => Some("a loopback address"),
        _ if ip.is_multicast() => Some("a multicast address"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("a broadcast address"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("a link-local address"),
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some("a link-local address"),
        _ => None,
    }
}

/// Whether kefu may send a call's RTP where an SDP from `signalled_from` points:
/// otherwise anyone could aim a call's media at a service (a loopback port, a
/// broadcast address, a well-known port) and use kefu to flood it. Loopback and
/// link-local targets are accepted only from a peer that is itself such an address
/// (the demo and tests on one machine); multicast, broadcast and ports below 1024
/// never. 0.0.0.0 is the old way to put a call on hold, and is no target.
pub fn check_target(
    target: std::net::SocketAddr,
    signalled_from: std::net::IpAddr,
) -> Result<(), SdpError> {
    let ip = target.ip();
    if ip.is_unspecified() {
        return Ok(());
    }
    if target.port() < 1024 {
        return Err(SdpError::Target(target, "a well-known port"));
    }
    match scope(ip) {
        None => Ok(()),
        Some(kind) if scope(signalled_from) == Some(kind) && !ip.is_multicast() => Ok(()),
        Some(kind) => Err(SdpError::Target(target, kind)),
    }
}

/// Media direction from one side's point of view (RFC 3264 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// Our direction for a peer's: what they send we receive.
    pub fn reverse(self) -> Self {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// What offer and answer agreed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// Where the peer wants RTP (until symmetric RTP learns its real source).
    pub remote: SocketAddr,
    pub law: Law,
    pub payload_type: u8,
    /// The peer's payload type for telephone-event/8000, when offered.
    pub telephone_event: Option<u8>,
    /// Our direction.
    pub direction: Direction,
    pub ptime: u32,
    /// RTCP on the RTP port (the offer's `a=rtcp-mux`, RFC 5761), which the
    /// answer accepts.
    pub rtcp_mux: bool,
    /// The peer's RTCP port when the offer names one (`a=rtcp`, RFC 3605);
    /// else the RTP port + 1.
    pub rtcp_port: Option<u16>,
}

impl Negotiated {
    /// Where the peer wants RTCP (before a report from it shows its source):
    /// the RTP address when multiplexed, the `a=rtcp` port, else the port
    /// above an even RTP port (RFC 3550 §11). None for an odd RTP port with no
    /// `a=rtcp`: the peer did not pair its ports, and the next port up may
    /// well be someone else's.
    pub fn rtcp_target(&self) -> Option<SocketAddr> {
        if self.rtcp_mux {
            return Some(self.remote);
        }
        let port = match self.rtcp_port {
            Some(p) => p,
            None if self.remote.port().is_multiple_of(2) => self.remote.port().checked_add(1)?,
            None => return None,
        };
        Some(SocketAddr::new(self.remote.ip(), port))
    }
}

/// Chooses codecs and direction from an offer; PCMU is preferred over PCMA, but
/// the offerer's order wins among what we support.
pub fn negotiate(offer: &[u8]) -> Result<Negotiated, SdpError> {
    let text = std::str::from_utf8(offer).map_err(|_| SdpError::Malformed("not UTF-8".into()))?;
    let desc = sdp::SessionDescription::unmarshal(&mut Cursor::new(text))
        .map_err(|e| SdpError::Malformed(e.to_string()))?;
    let media = desc
        .media_descriptions
        .iter()
        .find(|m| m.media_name.media == "audio" && m.media_name.port.value > 0)
        .ok_or(SdpError::NoAudio)?;
    let rtpmap = |pt: &str| {
        media
            .attributes
            .iter()
            .filter(|a| a.key == "rtpmap")
            .filter_map(|a| a.value.as_deref())
            .find_map(|v| {
                let (p, name) = v.split_once(' ')?;
                (p == pt).then(|| name.to_ascii_lowercase())
            })
    };
    let mut chosen = None;
    let mut telephone_event = None;
    for fmt in &media.media_name.formats {
        let Ok(pt) = fmt.parse::<u8>() else { continue };
        let name = rtpmap(fmt);
        let law = match (pt, name.as_deref()) {
            (_, Some(n)) if n.starts_with("pcmu/8000") => Some(Law::Pcmu),
            (_, Some(n)) if n.starts_with("pcma/8000") => Some(Law::Pcma),
            (0, None) => Some(Law::Pcmu),
            (8, None) => Some(Law::Pcma),
            _ => None,
        };
        if let Some(law) = law
            && chosen.is_none()
        {
            chosen = Some((law, pt));
        }
        if name
            .as_deref()
            .is_some_and(|n| n.starts_with("telephone-event/8000"))
        {
            telephone_event.get_or_insert(pt);
        }
    }
    let (law, payload_type) = chosen.ok_or(SdpError::NoCodec)?;
    let conn = media
        .connection_information
        .as_ref()
        .or(desc.connection_information.as_ref())
        .and_then(|c| c.address.as_ref())
        .ok_or(SdpError::NoAddress)?;
    let ip: IpAddr = conn.address.parse().map_err(|_| {
        SdpError::Malformed(format!(
            "connection address {:?} is not an IP address",
            conn.address
        ))
    })?;
    let port = u16::try_from(media.media_name.port.value)
        .map_err(|_| SdpError::Malformed("audio port out of range".into()))?;
    let attr = |key: &str| {
        media
            .attributes
            .iter()
            .chain(desc.attributes.iter())
            .any(|a| a.key == key)
    };
    let theirs = if attr("inactive") {
        Direction::Inactive
    } else if attr("sendonly") {
        Direction::SendOnly
    } else if attr("recvonly") {
        Direction::RecvOnly
    } else {
        Direction::SendRecv
    };
    // RFC 2543-style hold: a zero connection address means "don't send to me".
    let theirs = if ip.is_unspecified() && theirs == Direction::SendRecv {
        Direction::SendOnly
    } else {
        theirs
    };
    let ptime = media
        .attributes
        .iter()
        .find(|a| a.key == "ptime")
        .and_then(|a| a.value.as_deref()?.trim().parse().ok())
        .unwrap_or(20);
    // `a=rtcp:PORT [IN IP4 ADDR]`: only the port is taken (the address is the
    // media's in practice, and a report from the peer shows its real source).
    let rtcp_port = media
        .attributes
        .iter()
        .find(|a| a.key == "rtcp")
        .and_then(|a| a.value.as_deref()?.split_whitespace().next()?.parse().ok())
        .filter(|p: &u16| *p > 0);
    Ok(Negotiated {
        remote: SocketAddr::new(ip, port),
        law,
        payload_type,
        telephone_event,
        direction: theirs.reverse(),
        ptime,
        rtcp_mux: media.attributes.iter().any(|a| a.key == "rtcp-mux"),
        rtcp_port,
    })
}

/// Writes our answer. `version` must grow with each new answer in the dialog.
/// The address to put in SDP for a socket bound at `local`: the advertised
/// address (kefu.toml's `advertised_address`, a cloud VM's public one behind
/// 1:1 NAT) with the socket's port, or `local` itself.
pub fn public(local: SocketAddr, advertised: Option<std::net::IpAddr>) -> SocketAddr {
    advertised.map_or(local, |ip| SocketAddr::new(ip, local.port()))
}

pub fn answer(local: SocketAddr, n: &Negotiated, session_id: u64, version: u64) -> String {
    let ip_kind = if local.is_ipv4() { "IP4" } else { "IP6" };
    let ip = local.ip();
    let mut formats = n.payload_type.to_string();
    let mut attrs = format!(
        "a=rtpmap:{} {}/8000\r\n",
        n.payload_type,
        n.law.encoding_name()
    );
    if let Some(te) = n.telephone_event {
        formats.push_str(&format!(" {te}"));
        attrs.push_str(&format!(
            "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"
        ));
    }
    if n.rtcp_mux {
        attrs.push_str("a=rtcp-mux\r\n");
    }
    format!(
        "v=0\r\no=kefu {session_id} {version} IN {ip_kind} {ip}\r\ns=kefu\r\nc=IN {ip_kind} {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {formats}\r\n{attrs}a=ptime:20\r\na={dir}\r\n",
        port = local.port(),
        dir = n.direction.attribute(),
    )
}

/// The payload type kefu offers for telephone-event when it places a call.
pub const OFFERED_TELEPHONE_EVENT: u8 = 101;

/// Writes our offer when kefu places a call (an agent leg): PCMU, PCMA and
/// telephone-event, send and receive.
pub fn offer(local: SocketAddr, session_id: u64, version: u64) -> String {
    let ip_kind = if local.is_ipv4() { "IP4" } else { "IP6" };
    let ip = local.ip();
    let te = OFFERED_TELEPHONE_EVENT;
    format!(
        "v=0\r\no=kefu {session_id} {version} IN {ip_kind} {ip}\r\ns=kefu\r\nc=IN {ip_kind} {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 8 {te}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
        port = local.port(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
        m=audio 4000 RTP/AVP 18 8 0 101\r\na=rtpmap:18 G729/8000\r\na=rtpmap:8 PCMA/8000\r\n\
        a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";

    #[test]
    fn picks_first_supported_codec_and_telephone_event() {
        let n = negotiate(OFFER.as_bytes()).unwrap();
        assert_eq!(n.law, Law::Pcma);
        assert_eq!(n.payload_type, 8);
        assert_eq!(n.telephone_event, Some(101));
        assert_eq!(
            n.remote,
            "10.0.0.5:4000".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(n.direction, Direction::SendRecv);
        let a = answer("127.0.0.1:20000".parse().unwrap(), &n, 7, 1);
        assert!(a.contains("m=audio 20000 RTP/AVP 8 101\r\n"), "{a}");
        assert!(a.contains("a=rtpmap:101 telephone-event/8000"));
        // The answer parses as SDP too.
        assert!(sdp::SessionDescription::unmarshal(&mut Cursor::new(a)).is_ok());
    }

    #[test]
    fn rtcp_goes_to_the_next_port_the_named_one_or_the_rtp_port_when_multiplexed() {
        let at = |offer: &str| negotiate(offer.as_bytes()).unwrap().rtcp_target();
        let addr = |a: &str| Some(a.parse::<std::net::SocketAddr>().unwrap());
        assert_eq!(at(OFFER), addr("10.0.0.5:4001"));
        let named = format!("{OFFER}a=rtcp:5007 IN IP4 10.0.0.5\r\n");
        assert_eq!(at(&named), addr("10.0.0.5:5007"));
        let odd = OFFER.replace("m=audio 4000", "m=audio 4001");
        assert_eq!(at(&odd), None, "an odd RTP port without a=rtcp: no guess");
        let mux = format!("{OFFER}a=rtcp-mux\r\n");
        let n = negotiate(mux.as_bytes()).unwrap();
        assert_eq!(n.rtcp_target(), addr("10.0.0.5:4000"));
        let a = answer("127.0.0.1:20000".parse().unwrap(), &n, 7, 1);
        assert!(a.contains("a=rtcp-mux\r\n"), "{a}");
        assert!(
            !answer(
                "127.0.0.1:20000".parse().unwrap(),
                &negotiate(OFFER.as_bytes()).unwrap(),
                7,
                1
            )
            .contains("rtcp-mux")
        );
        let junk = format!("{OFFER}a=rtcp:notaport\r\n");
        assert_eq!(at(&junk), addr("10.0.0.5:4001"));
    }

    #[test]
    fn our_offer_parses_and_an_answer_to_it_negotiates() {
        let o = offer("127.0.0.1:20002".parse().unwrap(), 9, 1);
        let n = negotiate(o.as_bytes()).unwrap();
        assert_eq!((n.law, n.telephone_event), (Law::Pcmu, Some(101)));
        let answer = "v=0\r\no=- 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\n\
            m=audio 7000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
        let n = negotiate(answer.as_bytes()).unwrap();
        assert_eq!((n.law, n.telephone_event), (Law::Pcma, None));
    }

    #[test]
    fn hold_offers() {
        let held = OFFER.replace("a=fmtp:101 0-15\r\n", "a=fmtp:101 0-15\r\na=sendonly\r\n");
        assert_eq!(
            negotiate(held.as_bytes()).unwrap().direction,
            Direction::RecvOnly
        );
        let old_style = OFFER.replace("c=IN IP4 10.0.0.5", "c=IN IP4 0.0.0.0");
        assert!(!negotiate(old_style.as_bytes()).unwrap().direction.sends());
        let inactive = OFFER.replace("a=fmtp:101 0-15\r\n", "a=inactive\r\n");
        assert_eq!(
            negotiate(inactive.as_bytes()).unwrap().direction,
            Direction::Inactive
        );
    }

    #[test]
    fn static_payload_types_without_rtpmap() {
        let offer = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";
        let n = negotiate(offer.as_bytes()).unwrap();
        assert_eq!((n.law, n.telephone_event), (Law::Pcmu, None));
    }

    #[test]
    fn rejects_what_we_cannot_speak() {
        let g729 = OFFER.replace("RTP/AVP 18 8 0 101", "RTP/AVP 18");
        assert_eq!(negotiate(g729.as_bytes()), Err(SdpError::NoCodec));
        let video = OFFER.replace("m=audio", "m=video");
        assert_eq!(negotiate(video.as_bytes()), Err(SdpError::NoAudio));
        assert!(matches!(negotiate(b"garbage"), Err(SdpError::Malformed(_))));
    }

    #[test]
    fn media_goes_only_where_a_caller_may_point_it() {
        let from_carrier: std::net::IpAddr = "192.0.2.10".parse().unwrap();
        let from_here: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let ok = |t: &str, f| check_target(t.parse().unwrap(), f).is_ok();
        assert!(ok("192.0.2.20:30000", from_carrier));
        assert!(ok("10.1.2.3:30000", from_carrier));
        assert!(ok("0.0.0.0:30000", from_carrier));
        assert!(!ok("127.0.0.1:6379", from_carrier));
        assert!(!ok("[::1]:30000", from_carrier));
        assert!(!ok("169.254.169.254:8080", from_carrier));
        assert!(!ok("224.0.0.1:30000", from_carrier));
        assert!(!ok("255.255.255.255:30000", from_carrier));
        assert!(!ok("192.0.2.20:53", from_carrier));
        // A caller on this machine may use loopback (the demo), not multicast.
        assert!(ok("127.0.0.1:30000", from_here));
        assert!(!ok("224.0.0.1:30000", "224.0.0.2".parse().unwrap()));
        let e = check_target("127.0.0.1:6379".parse().unwrap(), from_carrier).unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
    }
}
