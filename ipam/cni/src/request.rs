//! What a runtime gives the plugin: the `CNI_*` environment and the network
//! configuration on stdin, checked before anything is changed.

use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::Value;
use starling_datastore::config::DatastoreSpec;
use starling_ipam::Handle;

use crate::spec::{code, CniError, SUPPORTED_VERSIONS};

/// The plugin's `type`.
pub const PLUGIN_TYPE: &str = "starling-cni";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

/// The `CNI_*` variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    pub container_id: Option<String>,
    pub netns: Option<String>,
    pub ifname: Option<String>,
    /// `NAMESPACE/NAME` from `CNI_ARGS`' `K8S_POD_NAMESPACE` and
    /// `K8S_POD_NAME`, as the kubelet's runtime passes them.
    pub pod: Option<String>,
}

/// Reads `CNI_COMMAND` through `var`.
pub fn command(var: &dyn Fn(&str) -> Option<String>) -> Result<Command, CniError> {
    let invalid = |m: String| CniError::new(code::INVALID_ENVIRONMENT, m);
    match var("CNI_COMMAND").as_deref() {
        Some("ADD") => Ok(Command::Add),
        Some("DEL") => Ok(Command::Del),
        Some("CHECK") => Ok(Command::Check),
        Some("STATUS") => Ok(Command::Status),
        Some("GC") => Ok(Command::Gc),
        Some("VERSION") => Ok(Command::Version),
        Some(other) => Err(invalid(format!("CNI_COMMAND {other:?} is not a CNI verb"))),
        None => Err(invalid("CNI_COMMAND is not set".to_string())),
    }
}

impl Env {
    /// Reads the variables through `var` (empty counts as unset).
    pub fn read(var: &dyn Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| var(k).filter(|v| !v.is_empty());
        Env {
            container_id: get("CNI_CONTAINERID"),
            netns: get("CNI_NETNS"),
            ifname: get("CNI_IFNAME"),
            pod: get("CNI_ARGS").and_then(|a| pod_of(&a)),
        }
    }

    /// The handle of this attachment: `CNI_CONTAINERID` and `CNI_IFNAME`,
    /// both required and checked as the spec says.
    pub fn handle(&self) -> Result<Handle, CniError> {
        let id = required(&self.container_id, "CNI_CONTAINERID")?;
        if !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(CniError::new(
                code::INVALID_ENVIRONMENT,
                format!("CNI_CONTAINERID {id:?}: only letters, digits, '_', '.' and '-'"),
            ));
        }
        let ifname = required(&self.ifname, "CNI_IFNAME")?;
        let bad = ifname.len() > 15
            || ifname == "."
            || ifname == ".."
            || ifname
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace());
        if bad {
            return Err(CniError::new(
                code::INVALID_ENVIRONMENT,
                format!("CNI_IFNAME {ifname:?} is not a valid interface name"),
            ));
        }
        Ok(Handle::new(id, ifname))
    }

    pub fn netns(&self) -> Result<String, CniError> {
        required(&self.netns, "CNI_NETNS").map(str::to_string)
    }
}

/// The pod named in `CNI_ARGS` (`K=V;K=V`), if both keys are there.
fn pod_of(args: &str) -> Option<String> {
    let arg = |key: &str| {
        args.split(';')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .filter(|v| !v.is_empty())
    };
    Some(format!(
        "{}/{}",
        arg("K8S_POD_NAMESPACE")?,
        arg("K8S_POD_NAME")?
    ))
}

fn required<'a>(v: &'a Option<String>, name: &str) -> Result<&'a str, CniError> {
    v.as_deref()
        .ok_or_else(|| CniError::new(code::INVALID_ENVIRONMENT, format!("{name} is not set")))
}

/// One container attachment named by GC's `cni.dev/valid-attachments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
}

/// The smallest `mtu` taken: IPv6's minimum link MTU.
pub const MIN_MTU: u32 = 1280;
/// The largest `mtu` taken (a jumbo frame's).
pub const MAX_MTU: u32 = 65535;

/// The plugin's network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub node_name: String,
    pub datastore: Datastore,
    pub strict_affinity: bool,
    pub prev_result: Option<Value>,
    /// GC's `cni.dev/valid-attachments`.
    pub valid_attachments: Option<Vec<Attachment>>,
    /// The addresses asked for by the `ips` capability
    /// (`runtimeConfig.ips`, `["10.244.1.10/32"]`); empty: any.
    pub requested_ips: Vec<IpAddr>,
    /// `"mtu"`: the pods' MTU, overriding what the plugin works out (the
    /// uplink's, less VXLAN's overhead when a pool uses VXLAN).
    pub mtu: Option<u32>,
}

/// Where the cluster's objects (Nodes, IPPools) and the IPAM blocks are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datastore {
    /// `"datastore": "file:PATH"`: the YAML the agent reads, and the IPAM
    /// file store `"stateDir"` (shared with the agent's `--state-dir`).
    File {
        cluster: PathBuf,
        state_dir: PathBuf,
    },
    /// `"datastore": "kubernetes"`: the API server, reached through
    /// `"kubeconfig"` if given, else as the agent does (in-cluster, or
    /// `KUBECONFIG`); IPAM blocks as IPAMBlock objects.
    Kubernetes { kubeconfig: Option<PathBuf> },
}

/// The `cniVersion` of a configuration, if it has one we speak: parsed on
/// its own so that even a configuration that is otherwise wrong gets errors
/// in its own version.
pub fn version_of(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    let version = v.get("cniVersion")?.as_str()?;
    SUPPORTED_VERSIONS
        .contains(&version)
        .then(|| version.to_string())
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        let v: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                code::DECODE_FAILURE,
                "the network configuration is not JSON",
            )
            .details(e.to_string())
        })?;
        let invalid = |m: String| CniError::new(code::INVALID_CONFIG, m);
        if !v.is_object() {
            return Err(invalid(
                "the network configuration must be an object".into(),
            ));
        }
        let string = |key: &str| -> Result<Option<String>, CniError> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(invalid(format!("{key}: expected a string, got {other}"))),
            }
        };
        let need = |key: &str| -> Result<String, CniError> {
            string(key)?
                .filter(|s| !s.is_empty())
                .ok_or_else(|| invalid(format!("{key} is required")))
        };
        let cni_version = need("cniVersion")?;
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "cniVersion {cni_version:?} is not supported (supported: {})",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        let kind = need("type")?;
        if kind != PLUGIN_TYPE {
            return Err(invalid(format!(
                "type is {kind:?}, expected {PLUGIN_TYPE:?}"
            )));
        }
        let datastore = match need("datastore")?.parse::<DatastoreSpec>() {
            Ok(DatastoreSpec::File(cluster)) => Datastore::File {
                cluster,
                state_dir: PathBuf::from(need("stateDir")?),
            },
            Ok(DatastoreSpec::Kubernetes) => Datastore::Kubernetes {
                kubeconfig: string("kubeconfig")?
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from),
            },
            Err(e) => return Err(invalid(format!("datastore: {e}"))),
        };
        let strict_affinity = match v.get("strictAffinity") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(invalid(format!(
                    "strictAffinity: expected true or false, got {other}"
                )))
            }
        };
        let mtu = match v.get("mtu") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(m) if (MIN_MTU..=MAX_MTU).contains(&m) => Some(m),
                _ => {
                    return Err(invalid(format!(
                        "mtu: {n} is out of range ({MIN_MTU} to {MAX_MTU})"
                    )))
                }
            },
            Some(other) => return Err(invalid(format!("mtu: expected a number, got {other}"))),
        };
        Ok(NetConf {
            mtu,
            name: need("name")?,
            node_name: need("nodeName")?,
            datastore,
            strict_affinity,
            prev_result: v.get("prevResult").filter(|p| !p.is_null()).cloned(),
            valid_attachments: attachments(v.get("cni.dev/valid-attachments"))?,
            requested_ips: requested_ips(v.get("runtimeConfig").and_then(|r| r.get("ips")))?,
            cni_version,
        })
    }
}

fn requested_ips(v: Option<&Value>) -> Result<Vec<IpAddr>, CniError> {
    let invalid =
        |m: String| CniError::new(code::INVALID_CONFIG, format!("runtimeConfig.ips: {m}"));
    let Some(list) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let items = list
        .as_array()
        .ok_or_else(|| invalid("expected a list".into()))?;
    items
        .iter()
        .map(|item| {
            let text = item.as_str().unwrap_or_default();
            let addr = text.split('/').next().unwrap_or_default();
            addr.parse::<IpAddr>().map_err(|_| {
                invalid(format!(
                    "expected an address such as 10.244.1.10/32, got {item}"
                ))
            })
        })
        .collect()
}

fn attachments(v: Option<&Value>) -> Result<Option<Vec<Attachment>>, CniError> {
    let invalid = |m: &str| {
        CniError::new(
            code::INVALID_CONFIG,
            format!("cni.dev/valid-attachments: {m}"),
        )
    };
    let Some(list) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let items = list.as_array().ok_or_else(|| invalid("expected a list"))?;
    items
        .iter()
        .map(|item| {
            let field = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_string);
            match (field("containerID"), field("ifname")) {
                (Some(container_id), Some(ifname)) => Ok(Attachment {
                    container_id,
                    ifname,
                }),
                _ => Err(invalid("each entry needs containerID and ifname strings")),
            }
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"cniVersion": "1.1.0", "name": "starling", "type": "starling-cni",
        "nodeName": "node-1", "datastore": "file:/etc/starling/cluster.yaml",
        "stateDir": "/var/lib/starling/ipam", "runtimeConfig": {}}"#;

    fn parse_with(key: &str, value: &str) -> Result<NetConf, CniError> {
        let mut v: Value = serde_json::from_str(GOOD).unwrap();
        v[key] = serde_json::from_str(value).unwrap();
        NetConf::parse(v.to_string().as_bytes())
    }

    #[test]
    fn reads_the_plugin_keys() {
        let c = NetConf::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(c.node_name, "node-1");
        assert_eq!(
            c.datastore,
            Datastore::File {
                cluster: PathBuf::from("/etc/starling/cluster.yaml"),
                state_dir: PathBuf::from("/var/lib/starling/ipam"),
            }
        );
        let c = parse_with("datastore", "\"kubernetes\"").unwrap();
        assert_eq!(c.datastore, Datastore::Kubernetes { kubeconfig: None });
        let mut v: Value = serde_json::from_str(GOOD).unwrap();
        v["datastore"] = "kubernetes".into();
        v["kubeconfig"] = "/etc/cni/net.d/starling-kubeconfig".into();
        v.as_object_mut().unwrap().remove("stateDir");
        assert_eq!(
            NetConf::parse(v.to_string().as_bytes()).unwrap().datastore,
            Datastore::Kubernetes {
                kubeconfig: Some("/etc/cni/net.d/starling-kubeconfig".into())
            }
        );
        assert!(!c.strict_affinity && c.prev_result.is_none());
        assert_eq!(c.mtu, None);
        assert_eq!(parse_with("mtu", "1450").unwrap().mtu, Some(1450));
        for bad in ["1000", "70000", "\"1450\"", "-1"] {
            let e = parse_with("mtu", bad).unwrap_err();
            assert!(e.msg.starts_with("mtu: "), "{bad}: {}", e.msg);
        }
        let c = parse_with(
            "runtimeConfig",
            r#"{"ips": ["10.244.1.10/32", "fd00::10"]}"#,
        )
        .unwrap();
        let want: Vec<IpAddr> = vec!["10.244.1.10".parse().unwrap(), "fd00::10".parse().unwrap()];
        assert_eq!(c.requested_ips, want);
        assert_eq!(
            parse_with("runtimeConfig", r#"{"ips": ["10.244.1.300/32"]}"#)
                .unwrap_err()
                .code,
            7
        );
        let c = parse_with(
            "cni.dev/valid-attachments",
            r#"[{"containerID": "a", "ifname": "eth0"}]"#,
        )
        .unwrap();
        assert_eq!(c.valid_attachments.unwrap()[0].container_id, "a");
    }

    #[test]
    fn errors_carry_the_spec_codes() {
        let code_of = |r: Result<NetConf, CniError>| r.unwrap_err().code;
        assert_eq!(code_of(NetConf::parse(b"{\"cniVersion\": ")), 6);
        assert_eq!(code_of(NetConf::parse(b"[1]")), 7);
        assert_eq!(code_of(parse_with("cniVersion", "\"0.3.1\"")), 1);
        assert_eq!(code_of(parse_with("cniVersion", "\"9.9.9\"")), 1);
        assert_eq!(code_of(parse_with("type", "\"calico\"")), 7);
        assert_eq!(code_of(parse_with("nodeName", "5")), 7);
        assert_eq!(code_of(parse_with("stateDir", "null")), 7);
        assert_eq!(code_of(parse_with("datastore", "\"/x.yaml\"")), 7);
        assert_eq!(code_of(parse_with("strictAffinity", "\"yes\"")), 7);
        assert_eq!(
            code_of(parse_with(
                "cni.dev/valid-attachments",
                "[{\"ifname\": \"eth0\"}]"
            )),
            7
        );
        assert_eq!(version_of(GOOD.as_bytes()).as_deref(), Some("1.1.0"));
        assert_eq!(version_of(b"{\"cniVersion\": \"0.1.0\"}"), None);
    }

    #[test]
    fn environment_is_checked() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            Env::read(&|k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            })
        };
        let e = env(&[("CNI_CONTAINERID", "abc"), ("CNI_IFNAME", "eth0")]);
        assert_eq!(e.handle().unwrap(), Handle::new("abc", "eth0"));
        assert_eq!(e.pod, None);
        let args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;\
            K8S_POD_INFRA_CONTAINER_ID=abc";
        assert_eq!(pod_of(args).as_deref(), Some("default/web-0"));
        assert_eq!(pod_of("K8S_POD_NAME=web-0"), None);
        assert_eq!(e.netns().unwrap_err().code, 4);
        assert_eq!(env(&[("CNI_IFNAME", "eth0")]).handle().unwrap_err().code, 4);
        let bad_id = env(&[("CNI_CONTAINERID", "a/b"), ("CNI_IFNAME", "eth0")]);
        assert_eq!(bad_id.handle().unwrap_err().code, 4);
        let bad_if = env(&[
            ("CNI_CONTAINERID", "a"),
            ("CNI_IFNAME", "a-very-long-name0"),
        ]);
        assert_eq!(bad_if.handle().unwrap_err().code, 4);
        let cmd = |v: &'static str| command(&move |_: &str| Some(v.to_string()));
        assert_eq!(cmd("ADD").unwrap(), Command::Add);
        assert_eq!(cmd("add").unwrap_err().code, 4);
    }
}
