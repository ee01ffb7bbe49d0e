//! DTMF in all three forms a caller's key press reaches us: RFC 4733 telephone-event
//! packets, SIP INFO bodies, and audio tones in the voice stream.

pub mod inband;
pub mod relay;
pub mod rfc4733;

/// How a trunk delivers key presses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtmfMode {
    /// RFC 4733 when telephone-event is negotiated, in-band tones when it is not;
    /// SIP INFO always.
    #[default]
    Auto,
    Rfc4733,
    Info,
    Inband,
}

impl DtmfMode {
    pub fn accepts_info(self) -> bool {
        matches!(self, DtmfMode::Auto | DtmfMode::Info)
    }

    pub fn accepts_rfc4733(self, negotiated: bool) -> bool {
        negotiated && matches!(self, DtmfMode::Auto | DtmfMode::Rfc4733)
    }

    pub fn accepts_inband(self, telephone_event_negotiated: bool) -> bool {
        match self {
            DtmfMode::Inband => true,
            DtmfMode::Auto => !telephone_event_negotiated,
            _ => false,
        }
    }
}

/// The sixteen DTMF symbols in RFC 4733 event-code order (0–9, *, #, A–D).
pub const EVENT_DIGITS: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
];

/// Maps an RFC 4733 event code to its symbol.
pub fn digit_for_event(event: u8) -> Option<char> {
    EVENT_DIGITS.get(usize::from(event)).copied()
}

/// Normalises a symbol written by a peer (`a`…`d` in lower case too).
pub fn normalise_digit(c: char) -> Option<char> {
    let c = c.to_ascii_uppercase();
    EVENT_DIGITS.contains(&c).then_some(c)
}
