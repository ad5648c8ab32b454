//! The CNI 1.1.0 wire types this plugin writes: the ADD result, the VERSION
//! answer, and the error object with the spec's codes.

use serde::Serialize;

/// The versions whose configuration and result formats this plugin speaks.
pub const SUPPORTED_VERSIONS: &[&str] = &["1.0.0", "1.1.0"];
/// The version of answers given before a configuration names one.
pub const LATEST_VERSION: &str = "1.1.0";

/// Error codes of the CNI specification, and this plugin's own (100 and up).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const CONTAINER_UNKNOWN: u32 = 3;
    pub const INVALID_ENVIRONMENT: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    /// No free address in the pools that apply to the node.
    pub const POOL_EXHAUSTED: u32 = 100;
    /// CHECK found the pod's network not as ADD left it.
    pub const CHECK_FAILED: u32 = 101;
    /// An address asked for (runtimeConfig `ips`) is held by another.
    pub const ADDRESS_IN_USE: u32 = 102;
}

/// A CNI error: printed as the spec's error object, exit status 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }
}

/// The error object as printed: `{"cniVersion", "code", "msg", "details"}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorOutput<'a> {
    pub cni_version: &'a str,
    #[serde(flatten)]
    pub error: &'a CniError,
}

/// The VERSION answer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionOutput {
    pub cni_version: &'static str,
    pub supported_versions: &'static [&'static str],
}

/// The result of ADD (and the prevResult CHECK and DEL are given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddResult {
    pub cni_version: String,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    /// The network namespace path, for interfaces inside the container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpConfig {
    /// `10.244.0.5/32`.
    pub address: String,
    pub gateway: String,
    /// Index into `interfaces`.
    pub interface: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub dst: String,
    pub gw: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Dns {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_object_has_the_spec_fields() {
        let e = CniError::new(code::INCOMPATIBLE_VERSION, "bad version").details("x");
        let shown = serde_json::to_string(&ErrorOutput {
            cni_version: "1.1.0",
            error: &e,
        })
        .unwrap();
        assert_eq!(
            shown,
            r#"{"cniVersion":"1.1.0","code":1,"msg":"bad version","details":"x"}"#
        );
    }

    #[test]
    fn result_names_fields_as_the_spec_does() {
        let r = AddResult {
            cni_version: "1.1.0".into(),
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: "aa:bb:cc:dd:ee:ff".into(),
                sandbox: Some("/run/netns/p".into()),
            }],
            ips: vec![IpConfig {
                address: "10.0.0.1/32".into(),
                gateway: "169.254.1.1".into(),
                interface: 0,
            }],
            routes: vec![Route {
                dst: "0.0.0.0/0".into(),
                gw: "169.254.1.1".into(),
            }],
            dns: Dns {},
        };
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["interfaces"][0]["sandbox"], "/run/netns/p");
        assert_eq!(v["ips"][0]["interface"], 0);
        assert_eq!(v["routes"][0]["gw"], "169.254.1.1");
        assert!(v["dns"].is_object());
    }
}
