//! `[sms_aliyun]` and `[sms_tencent]` in kefu.toml: sending SMS through the SMS
//! APIs of Alibaba Cloud (阿里云短信) or Tencent Cloud (腾讯云短信) instead of a
//! gateway URL. Both send only approved templates: kefu puts each message part
//! into the template's one variable.

use anyhow::bail;
use serde::Deserialize;

/// Alibaba Cloud SMS (`SendSms`, API version 2017-05-25, signature v1).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AliyunSms {
    pub access_key_id: String,
    pub access_key_secret: String,
    /// The approved signature (签名), "某某客服".
    pub sign_name: String,
    /// The approved template's code, "SMS_123456789", with one variable.
    pub template_code: String,
    /// The template's variable (`${content}` in the template: "content").
    #[serde(default = "content")]
    pub template_param: String,
    #[serde(default = "aliyun_endpoint")]
    pub endpoint: String,
}

/// Tencent Cloud SMS (`SendSms`, API 3.0 version 2021-01-11, TC3-HMAC-SHA256).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TencentSms {
    pub secret_id: String,
    pub secret_key: String,
    /// The SMS application's SdkAppId, "1400000000".
    pub sdk_app_id: String,
    pub sign_name: String,
    /// The approved template's id, with one variable ({1}).
    pub template_id: String,
    #[serde(default = "guangzhou")]
    pub region: String,
    #[serde(default = "tencent_endpoint")]
    pub endpoint: String,
}

fn content() -> String {
    "content".into()
}
fn aliyun_endpoint() -> String {
    "https://dysmsapi.aliyuncs.com".into()
}
fn tencent_endpoint() -> String {
    "https://sms.tencentcloudapi.com".into()
}
fn guangzhou() -> String {
    "ap-guangzhou".into()
}

/// Where SMS messages are sent from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmsOut {
    /// A gateway's send URL (form fields To, From, Body).
    Gateway(String),
    Aliyun(AliyunSms),
    Tencent(TencentSms),
}

fn filled(section: &str, fields: &[(&str, &str)], endpoint: &str) -> anyhow::Result<()> {
    for (name, value) in fields {
        if value.trim().is_empty() {
            bail!("[{section}] `{name}` must not be empty");
        }
    }
    if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
        bail!("[{section}] `endpoint` must be an http(s) URL");
    }
    Ok(())
}

/// The one way SMS is sent, checked: at most one of `sms_outbound_url`,
/// `[sms_aliyun]`, `[sms_tencent]`.
pub fn sms_out(
    url: Option<String>,
    aliyun: Option<AliyunSms>,
    tencent: Option<TencentSms>,
) -> anyhow::Result<Option<SmsOut>> {
    match (url, aliyun, tencent) {
        (None, None, None) => Ok(None),
        (Some(u), None, None) => Ok(Some(SmsOut::Gateway(u))),
        (None, Some(a), None) => {
            filled(
                "sms_aliyun",
                &[
                    ("access_key_id", &a.access_key_id),
                    ("access_key_secret", &a.access_key_secret),
                    ("sign_name", &a.sign_name),
                    ("template_code", &a.template_code),
                    ("template_param", &a.template_param),
                ],
                &a.endpoint,
            )?;
            Ok(Some(SmsOut::Aliyun(a)))
        }
        (None, None, Some(t)) => {
            filled(
                "sms_tencent",
                &[
                    ("secret_id", &t.secret_id),
                    ("secret_key", &t.secret_key),
                    ("sdk_app_id", &t.sdk_app_id),
                    ("sign_name", &t.sign_name),
                    ("template_id", &t.template_id),
                    ("region", &t.region),
                ],
                &t.endpoint,
            )?;
            Ok(Some(SmsOut::Tencent(t)))
        }
        _ => bail!("choose one way to send SMS: `sms_outbound_url`, [sms_aliyun] or [sms_tencent]"),
    }
}
