//! Core `Secret` objects, for the TCP MD5 passwords BGPPeers name
//! (`spec.password.secretKeyRef`), as Calico does.

use std::collections::BTreeMap;

use base64::Engine;

use serde::Deserialize;
use serde_yaml::Value;

use super::field_error::{FieldError, FieldResult};
use super::typed::typed;

pub const KIND_SECRET: &str = "Secret";
/// The lengths a TCP MD5 password may have, in octets: Linux takes keys of
/// at most 80 (`TCP_MD5SIG_MAXKEYLEN`), and an empty key would remove the
/// key, leaving the session unsigned.
pub const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 1..=80;

/// A Secret's keys and their values (decoded from `data`, or `stringData`).
pub type SecretData = BTreeMap<String, String>;

/// `spec.password.secretKeyRef` of a BGPPeer: the CRDs' type.
pub use crate::crd::SecretKeyRef;

/// A Secret: `data` values are base64 (as the API server returns them),
/// `stringData` values plain; a key in both takes `stringData`'s, as the API
/// server does.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretObject {
    #[serde(default)]
    data: Option<BTreeMap<String, String>>,
    #[serde(default)]
    string_data: Option<BTreeMap<String, String>>,
}

pub(crate) fn secret(object: &Value) -> FieldResult<SecretData> {
    let read: SecretObject = typed(object, "")?;
    let mut out = SecretData::new();
    for (key, value) in read.data.unwrap_or_default() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .map_err(|e| FieldError::new(format!("data[{key}]"), format!("not base64: {e}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| FieldError::new(format!("data[{key}]"), "not UTF-8 text"))?;
        out.insert(key, text);
    }
    out.extend(read.string_data.unwrap_or_default());
    Ok(out)
}
