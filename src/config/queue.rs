//! `[[queue]]` in kefu.toml, checked.

use std::time::Duration;

use anyhow::bail;

use super::{QueueFile, duration};

/// One `[[queue]]` of the file, checked.
pub(super) fn queue_config(q: QueueFile) -> anyhow::Result<crate::agents::queue::QueueConfig> {
    let name = q.name.trim().to_string();
    let mut c = crate::agents::queue::QueueConfig::named(&name);
    let field = |f: &str| format!("[[queue]] {name}: `{f}`");
    if let Some(s) = q.strategy {
        c.strategy = s;
    }
    if let Some(t) = q.max_wait {
        c.max_wait = duration(&field("max_wait"), &t)?;
    }
    if let Some(t) = q.ring_timeout {
        c.ring_timeout = duration(&field("ring_timeout"), &t)?;
    }
    if let Some(t) = q.wrap_up {
        c.wrap_up = duration(&field("wrap_up"), &t)?;
    }
    if let Some(t) = q.announce_every {
        c.announce_every = match t.as_str() {
            "off" | "never" => None,
            t => Some(duration(&field("announce_every"), t)?),
        };
    }
    if let Some(h) = q.hold_music {
        let path = std::path::Path::new(&h);
        if h.is_empty()
            || path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            bail!(
                "{}: a WAV file under audio/, like \"hold.wav\"",
                field("hold_music")
            );
        }
        c.hold_music = h;
    }
    c.record = q.record.unwrap_or(false);
    if let Some(t) = q.sla {
        c.sla = duration(&field("sla"), &t)?;
        if c.sla < Duration::from_secs(60) {
            bail!("{}: at least a minute, like \"8h\" or \"2d\"", field("sla"));
        }
    }
    if c.ring_timeout < Duration::from_secs(5) || c.max_wait < c.ring_timeout {
        bail!(
            "[[queue]] {name}: `ring_timeout` must be at least 5s and `max_wait` at least `ring_timeout`"
        );
    }
    Ok(c)
}
