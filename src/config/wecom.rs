//! `[wecom]` in kefu.toml: WeCom customer service (微信客服), the API through which
//! WeChat users write to a company's WeCom customer-service account.

use anyhow::bail;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Wecom {
    /// The company's CorpID ("ww…").
    pub corp_id: String,
    /// The customer-service app's Secret (微信客服 → API → Secret).
    pub secret: String,
    /// The callback's Token and EncodingAESKey (43 characters).
    pub token: String,
    pub aes_key: String,
    /// WeCom's API ("https://qyapi.weixin.qq.com", or a proxy in front of it).
    #[serde(default = "api")]
    pub api: String,
}

fn api() -> String {
    "https://qyapi.weixin.qq.com".into()
}

impl Wecom {
    pub fn checked(self) -> anyhow::Result<Self> {
        for (name, v) in [
            ("corp_id", &self.corp_id),
            ("secret", &self.secret),
            ("token", &self.token),
        ] {
            if v.trim().is_empty() {
                bail!("[wecom] `{name}` must not be empty");
            }
        }
        if super::encoding_aes_key(&self.aes_key).is_err() {
            bail!("[wecom] `aes_key` must be the callback's 43-character EncodingAESKey");
        }
        if !(self.api.starts_with("https://") || self.api.starts_with("http://")) {
            bail!("[wecom] `api` must be an http(s) URL");
        }
        Ok(self)
    }
}
