//! SIPp's message trace (`-trace_msg -message_file`), read back: when each
//! call's INVITE left, its 200 OK arrived, its ACK left and whether its BYE was
//! answered (nanoseconds since the epoch, by SIPp's call number).

use std::collections::HashMap;

/// What SIPp's message trace says about each call (by call number): when its
/// INVITE first left, its 200 OK arrived, its ACK left, and whether its BYE was
/// answered 200.
#[derive(Default, Debug)]
pub struct Signalling {
    pub invite: Option<i128>,
    pub ok: Option<i128>,
    pub ack: Option<i128>,
    pub bye_ok: bool,
}

pub fn parse_trace(text: &str) -> HashMap<u64, Signalling> {
    let mut calls: HashMap<u64, Signalling> = HashMap::new();
    for block in text.split("\n----------------------------------------------- ") {
        let mut lines = block.lines();
        let Some(stamp) = lines.next() else { continue };
        let stamp = stamp.trim_start_matches('-').trim();
        let Ok(t) = chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d\t%H:%M:%S%.f")
            .or_else(|_| chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.f"))
        else {
            continue;
        };
        // SIPp stamps in local time; the machine's local offset turns it into UTC.
        let Some(local) = t.and_local_timezone(chrono::Local).single() else {
            continue;
        };
        let at = i128::from(local.timestamp_nanos_opt().unwrap_or(0));
        let Some(kind) = lines.next() else { continue };
        let sent = kind.contains("message sent");
        let mut first = None;
        let mut call_id = None;
        let mut cseq = None;
        for l in lines {
            let l = l.trim_end_matches('\r');
            if l.is_empty() && first.is_none() {
                continue;
            }
            if first.is_none() {
                first = Some(l.to_string());
            } else if let Some(v) = l.strip_prefix("Call-ID:").or_else(|| l.strip_prefix("i:")) {
                call_id = Some(v.trim().to_string());
            } else if let Some(v) = l.strip_prefix("CSeq:") {
                cseq = Some(v.trim().to_string());
            }
        }
        let (Some(first), Some(call_id), Some(cseq)) = (first, call_id, cseq) else {
            continue;
        };
        let Some(n) = call_id
            .split('-')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let c = calls.entry(n).or_default();
        if sent && first.starts_with("INVITE ") && c.invite.is_none() {
            c.invite = Some(at);
        } else if !sent && first.starts_with("SIP/2.0 200") && cseq.ends_with("INVITE") {
            c.ok.get_or_insert(at);
        } else if sent && first.starts_with("ACK ") && c.ack.is_none() {
            c.ack = Some(at);
        } else if !sent && first.starts_with("SIP/2.0 200") && cseq.ends_with("BYE") {
            c.bye_ok = true;
        }
    }
    calls
}
