//! DTMF carried in SIP INFO bodies: `application/dtmf-relay` (`Signal=5`) and
//! `application/dtmf` (the bare symbol).

use super::normalise_digit;

/// Why an INFO body was not a key press.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("unsupported content type {0:?}: use application/dtmf-relay or application/dtmf")]
    ContentType(String),
    #[error("no DTMF symbol in the body: expected `Signal=<0-9*#A-D>`")]
    NoSignal,
    #[error("{0:?} is not a DTMF symbol (0-9, *, #, A-D)")]
    BadSymbol(String),
}

/// Extracts the key pressed from an INFO request's content type and body.
pub fn parse_info(content_type: &str, body: &[u8]) -> Result<char, RelayError> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let text = String::from_utf8_lossy(body);
    let symbol = match media.as_str() {
        "application/dtmf-relay" => text
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("signal")
                    .then(|| value.trim())
            })
            .ok_or(RelayError::NoSignal)?
            .to_string(),
        "application/dtmf" => text.trim().to_string(),
        _ => return Err(RelayError::ContentType(media)),
    };
    // Some phones send the event code (10 for *, 11 for #) instead of the symbol.
    let digit = match symbol.as_str() {
        "10" => Some('*'),
        "11" => Some('#'),
        s if s.chars().count() == 1 => s.chars().next().and_then(normalise_digit),
        _ => None,
    };
    digit.ok_or(RelayError::BadSymbol(symbol))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmf_relay_body() {
        let body = b"Signal=5\r\nDuration=160\r\n";
        assert_eq!(parse_info("application/dtmf-relay", body), Ok('5'));
        assert_eq!(
            parse_info("Application/DTMF-Relay; x=y", b"signal= #\r\n"),
            Ok('#')
        );
        assert_eq!(
            parse_info("application/dtmf-relay", b"Signal=11\r\n"),
            Ok('#')
        );
    }

    #[test]
    fn dtmf_body() {
        assert_eq!(parse_info("application/dtmf", b"*"), Ok('*'));
        assert_eq!(parse_info("application/dtmf", b"d\r\n"), Ok('D'));
    }

    #[test]
    fn rejects_what_is_not_a_key() {
        assert_eq!(
            parse_info("application/dtmf-relay", b"Duration=160"),
            Err(RelayError::NoSignal)
        );
        assert!(matches!(
            parse_info("application/dtmf", b"12"),
            Err(RelayError::BadSymbol(_))
        ));
        assert!(matches!(
            parse_info("text/plain", b"1"),
            Err(RelayError::ContentType(_))
        ));
    }
}
