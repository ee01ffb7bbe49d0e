//! `[widget]` in kefu.toml: which sites may embed the chat widget (and its call
//! button) and call the chat API from their pages.

use anyhow::bail;
use serde::Deserialize;

/// `[widget]` as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WidgetFile {
    /// Origins that may embed the widget and call the chat API cross-origin,
    /// like "https://shop.example"; unset (the default): any site.
    pub allowed_origins: Option<Vec<String>>,
}

/// The widget's embedding rules, checked.
#[derive(Clone, Debug, Default)]
pub struct Widget {
    /// None: any origin.
    pub allowed_origins: Option<Vec<String>>,
}

impl Widget {
    pub fn from_file(f: WidgetFile) -> anyhow::Result<Self> {
        if let Some(origins) = &f.allowed_origins {
            for o in origins {
                if !is_origin(o) {
                    bail!(
                        "[widget] allowed_origins: {o:?} is not an origin; write it like \"https://shop.example\" (scheme, host, optional port, no path)"
                    );
                }
            }
        }
        Ok(Self {
            allowed_origins: f.allowed_origins,
        })
    }

    /// Whether a page from `origin` may use the chat API and embed the widget.
    pub fn allows(&self, origin: &str) -> bool {
        self.allowed_origins
            .as_ref()
            .is_none_or(|list| list.iter().any(|o| o.eq_ignore_ascii_case(origin)))
    }

    /// The Content-Security-Policy `frame-ancestors` sources for the widget.
    pub fn frame_ancestors(&self) -> String {
        match &self.allowed_origins {
            None => "*".into(),
            Some(list) if list.is_empty() => "'none'".into(),
            Some(list) => list.join(" "),
        }
    }
}

/// `scheme://host[:port]` with nothing after it.
fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_and_matched() {
        let w = Widget::from_file(WidgetFile {
            allowed_origins: Some(vec![
                "https://shop.example".into(),
                "http://127.0.0.1:9000".into(),
            ]),
        })
        .unwrap();
        assert!(w.allows("https://shop.example"));
        assert!(w.allows("HTTPS://SHOP.EXAMPLE"));
        assert!(!w.allows("https://evil.example"));
        assert_eq!(
            w.frame_ancestors(),
            "https://shop.example http://127.0.0.1:9000"
        );
        assert!(Widget::default().allows("https://anyone.example"));
        for bad in [
            "shop.example",
            "https://shop.example/path",
            "ftp://x",
            "https://a b",
        ] {
            let e = Widget::from_file(WidgetFile {
                allowed_origins: Some(vec![bad.into()]),
            })
            .unwrap_err();
            assert!(e.to_string().contains("not an origin"), "{bad}: {e}");
        }
    }
}
