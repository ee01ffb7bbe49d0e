//! Who is calling: the From header's user, or, on a trunk trusted to assert it
//! (RFC 3325: the carrier's network vouches for the caller, whatever the From
//! says, e.g. "anonymous" with `Privacy: id`), the P-Asserted-Identity's.
//! Sans I/O.

/// The caller a P-Asserted-Identity value names: its first identity's `tel:`
/// number (visual separators dropped) or `sip:`/`sips:` user part. None when it
/// names neither.
pub fn asserted(value: &str) -> Option<String> {
    let v = value.trim();
    let uri = match v.find('<') {
        Some(open) => {
            let rest = &v[open + 1..];
            &rest[..rest.find('>')?]
        }
        None => v.split([',', ';']).next().unwrap_or_default(),
    }
    .trim();
    let (scheme, rest) = uri.split_once(':')?;
    let who = match scheme.to_ascii_lowercase().as_str() {
        "tel" => rest
            .split(';')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| !matches!(c, '-' | '.' | '(' | ')'))
            .collect::<String>(),
        "sip" | "sips" => {
            let (user, _host) = rest.split_once('@')?;
            user.split(';').next().unwrap_or_default().to_string()
        }
        _ => return None,
    };
    let fits = !who.is_empty()
        && who.len() <= 64
        && who
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '<' && c != '>');
    fits.then_some(who)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_users_are_read_from_the_usual_forms() {
        assert_eq!(
            asserted("<tel:+86-138-0013-8000>").as_deref(),
            Some("+8613800138000")
        );
        assert_eq!(
            asserted("\"Li Lei\" <sip:+8613800138000@ims.carrier.cn;user=phone>").as_deref(),
            Some("+8613800138000")
        );
        assert_eq!(
            asserted("<sip:+8613800138000;npdi@carrier.cn>, <tel:+8613800138000>").as_deref(),
            Some("+8613800138000")
        );
        assert_eq!(
            asserted("tel:+12025550123;phone-context=x").as_deref(),
            Some("+12025550123")
        );
        assert_eq!(asserted("sips:alice@example.com").as_deref(), Some("alice"));
    }

    #[test]
    fn what_names_no_caller_is_refused() {
        for bad in [
            "",
            "<sip:carrier.cn>",
            "<mailto:a@b>",
            "<tel:>",
            "<sip:@x>",
            "<tel:+86",
            "garbage",
        ] {
            assert_eq!(asserted(bad), None, "{bad:?}");
        }
        assert_eq!(asserted(&format!("<tel:{}>", "1".repeat(65))), None);
    }
}
