//! REGISTER from agents' phones (RFC 3261 §10): digest authentication against the
//! agent's stored HA1, then the binding goes to `agents::registrar`. Failed
//! attempts are throttled per source address and per extension: once locked, a
//! REGISTER gets 403 with the time to wait, before any credentials are looked at.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, StatusCode};
use rsipstack::transaction::transaction::Transaction;

use crate::agents::Phones;
use crate::agents::digest::{Algorithm, Credentials, NonceCheck};
use crate::agents::registrar::{self, Binding};
use crate::lock;
use crate::store::Store;

fn epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn warning(text: &str) -> Header {
    Header::Other("Warning".into(), format!("399 kefu \"{text}\""))
}

async fn challenge(
    tx: &mut Transaction,
    phones: &Phones,
    source: SocketAddr,
    stale: bool,
) -> rsipstack::Result<()> {
    let headers = phones
        .nonces
        .challenge(
            &phones.realm,
            &phones.offered,
            source.ip(),
            epoch_secs(),
            stale,
        )
        .into_iter()
        .map(|v| Header::Other("WWW-Authenticate".into(), v))
        .collect();
    tx.reply_with(StatusCode::Unauthorized, headers, None).await
}

/// Answers one REGISTER.
pub async fn handle(
    tx: &mut Transaction,
    phones: &Phones,
    store: &Store,
    source: SocketAddr,
    transport: &'static str,
) -> rsipstack::Result<()> {
    let extension = tx
        .original
        .to_header()
        .ok()
        .and_then(|t| t.uri().ok())
        .and_then(|u| u.user().map(str::to_string))
        .unwrap_or_default();
    if authenticate(tx, phones, store, source, &extension)
        .await?
        .is_none()
    {
        return Ok(());
    }
    bind(tx, phones, &extension, source, transport).await
}

/// Checks a request from an agent's phone (a REGISTER, or an INVITE to a feature
/// code) against the agent's stored HA1: Some(agent) when the credentials are
/// right; otherwise the request has been answered (401 challenge, 403 while
/// throttled, 400 for a malformed header) and None is returned.
pub async fn authenticate(
    tx: &mut Transaction,
    phones: &Phones,
    store: &Store,
    source: SocketAddr,
    extension: &str,
) -> rsipstack::Result<Option<crate::store::agents::Agent>> {
    let method = tx.original.method.to_string();
    // Failures count per address, and per extension from that address: a stranger
    // guessing 1001's password locks out only themselves, never 1001's own phone.
    let keys = [
        format!("ip:{}", source.ip()),
        format!("ext:{extension}@{}", source.ip()),
    ];
    let locked = {
        let t = lock(&phones.throttle);
        let now = Instant::now();
        keys.iter().filter_map(|k| t.check(k, now).err()).max()
    };
    if let Some(wait) = locked {
        return refuse_locked(tx, source, &method, wait).await;
    }
    let Some(auth) = tx
        .original
        .authorization_header()
        .map(|h| h.value().to_string())
    else {
        challenge(tx, phones, source, false).await?;
        return Ok(None);
    };
    let creds = match Credentials::parse(&auth) {
        Ok(c) => c,
        // RFC 3261 §22.1: a scheme the server does not use is answered with its own
        // challenge (RFC 4475 §3.3.7), not refused.
        Err(crate::agents::digest::DigestError::Scheme(_)) => {
            challenge(tx, phones, source, false).await?;
            return Ok(None);
        }
        Err(e) => {
            tx.reply_with(StatusCode::BadRequest, vec![warning(&e.to_string())], None)
                .await?;
            return Ok(None);
        }
    };
    match phones.nonces.check(&creds.nonce, source.ip(), epoch_secs()) {
        NonceCheck::Fresh => {}
        NonceCheck::Stale => {
            challenge(tx, phones, source, true).await?;
            return Ok(None);
        }
        NonceCheck::Forged => {
            challenge(tx, phones, source, false).await?;
            return Ok(None);
        }
    }
    // Only what kefu offers: an answer in an algorithm it did not offer (MD5 when
    // only SHA-256 is configured) is challenged again.
    if !phones.offered.contains(&creds.algorithm) {
        challenge(tx, phones, source, false).await?;
        return Ok(None);
    }
    let algorithm = match creds.algorithm {
        Algorithm::Sha256 => "sha256",
        Algorithm::Md5 => "md5",
    };
    let found = if creds.username == extension && creds.realm == phones.realm {
        match store.agent_secret(extension, algorithm).await {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "cannot read agent credentials");
                tx.reply(StatusCode::ServerInternalError).await?;
                return Ok(None);
            }
        }
    } else {
        None
    };
    // Checked again, verified and counted in one step: concurrent REGISTERs
    // cannot all pass the check above before the first failure is recorded.
    let verified = {
        let mut t = lock(&phones.throttle);
        let now = Instant::now();
        match keys.iter().filter_map(|k| t.check(k, now).err()).max() {
            Some(wait) => Err(wait),
            None => {
                let ok = found
                    .as_ref()
                    .is_some_and(|(_, ha1)| creds.verify(ha1, &method));
                if !ok {
                    for k in &keys {
                        t.fail(k, now);
                    }
                }
                Ok(ok)
            }
        }
    };
    let verified = match verified {
        Ok(v) => v,
        Err(wait) => return refuse_locked(tx, source, &method, wait).await,
    };
    if !verified {
        tracing::warn!(%source, %extension, "{method} with wrong credentials");
        challenge(tx, phones, source, false).await?;
        return Ok(None);
    }
    // A response is good once: the same nonce again needs a higher nonce count
    // (RFC 7616 §3.4), so a captured REGISTER cannot be replayed.
    let count = creds.qop_auth.as_ref().map(|(_, nc)| nc.as_str());
    if !phones.nonces.spend(&creds.nonce, count, epoch_secs()) {
        tracing::warn!(%source, %extension, "{method} replayed an earlier response");
        challenge(tx, phones, source, true).await?;
        return Ok(None);
    }
    lock(&phones.throttle).succeed(&keys[1]);
    Ok(found.map(|(agent, _)| agent))
}

/// 403 to a request from a locked-out address or extension, with the wait.
async fn refuse_locked(
    tx: &mut Transaction,
    source: SocketAddr,
    method: &str,
    wait: std::time::Duration,
) -> rsipstack::Result<Option<crate::store::agents::Agent>> {
    let secs = wait.as_secs().max(1);
    tracing::warn!(%source, "{method} refused: too many failures");
    tx.reply_with(
        StatusCode::Forbidden,
        vec![
            warning(&format!(
                "too many failed registrations; try again in {secs} s"
            )),
            Header::Other("Retry-After".into(), secs.to_string()),
        ],
        None,
    )
    .await?;
    Ok(None)
}

/// Applies the Contact headers of an authenticated REGISTER and answers 200 with
/// the current bindings.
async fn bind(
    tx: &mut Transaction,
    phones: &Phones,
    extension: &str,
    source: SocketAddr,
    transport: &'static str,
) -> rsipstack::Result<()> {
    use rsipstack::sip::headers::typed::Contact;
    let header_expires = tx
        .original
        .expires_header()
        .and_then(|e| e.value().trim().parse::<u32>().ok());
    let contacts: Vec<String> = tx
        .original
        .contact_headers()
        .iter()
        .map(|c| c.value().to_string())
        .collect();
    let now = Instant::now();
    if contacts.iter().any(|c| c.trim() == "*") {
        if header_expires != Some(0) || contacts.len() > 1 {
            return tx
                .reply_with(
                    StatusCode::BadRequest,
                    vec![warning("Contact: * needs Expires: 0 and no other contact")],
                    None,
                )
                .await;
        }
        lock(&phones.registrar).unbind(extension, None);
        phones.changed(extension);
        tracing::info!(%extension, "phone unregistered (all contacts)");
        return tx.reply(StatusCode::OK).await;
    }
    let mut parsed = Vec::new();
    for c in &contacts {
        match Contact::parse(c) {
            Ok(p) => parsed.push(p),
            Err(e) => {
                return tx
                    .reply_with(
                        StatusCode::BadRequest,
                        vec![warning(&format!("bad Contact: {e}"))],
                        None,
                    )
                    .await;
            }
        }
    }
    for c in &parsed {
        match registrar::expiry(c.expires().or(header_expires)) {
            Err(min) => {
                return tx
                    .reply_with(
                        StatusCode::IntervalTooBrief,
                        vec![Header::Other("Min-Expires".into(), min.to_string())],
                        None,
                    )
                    .await;
            }
            Ok(0) => lock(&phones.registrar).unbind(extension, Some(&c.uri.to_string())),
            Ok(secs) => lock(&phones.registrar).bind(
                extension,
                Binding {
                    contact: c.uri.to_string(),
                    source,
                    transport,
                    expires_at: now + registrar::seconds(secs),
                },
                now,
            ),
        }
    }
    let live = lock(&phones.registrar).contacts(extension, now);
    phones.changed(extension);
    tracing::info!(%extension, contacts = live.len(), %source, "phone registered");
    let headers = live
        .iter()
        .map(|b| {
            let left = b.expires_at.saturating_duration_since(now).as_secs();
            Header::Other("Contact".into(), format!("<{}>;expires={left}", b.contact))
        })
        .collect();
    tx.reply_with(StatusCode::OK, headers, None).await
}
