//! The Kubernetes IPAM store: [`BlockStore`] on `IPAMBlock` objects (see
//! `crd::ipam`), one per block, named after its CIDR (`10-244-0-64-26`).
//!
//! Every write is a compare-and-swap on `resourceVersion`: an update is a
//! PUT carrying the version read, a delete carries it as a precondition,
//! and a create fails if the name exists. The API server answers 409
//! (Conflict, AlreadyExists) or 404 when someone wrote first; that is
//! [`StoreError::Conflict`], on which the allocator reads again and starts
//! over.
//!
//! Each block with an affinity has a `BlockAffinity` `NODE-BLOCK`, created
//! after the block and deleted after it, both by compare-and-swap too, so
//! that a block deleted and claimed again at once never loses the new
//! claim's affinity. It has the block as owner, so Kubernetes' garbage
//! collector removes it should the writer die in between.
//!
//! [`BlockStore`] is synchronous (the CNI plugin and the allocator are);
//! each call runs the request on the tokio runtime given to
//! [`KubeBlockStore::new`], so it must be called from outside that runtime.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams, Preconditions};
use kube::{Client, Resource, ResourceExt};
use starling_ipam::{Allocation, Block, BlockStore, Handle, StoreError, Stored};
use tokio::runtime::Handle as Runtime;

use starling_datastore::crd::{
    BlockAffinity, BlockAffinitySpec, IPAMAllocation, IPAMBlock, IPAMBlockSpec,
};

/// Rounds of a `BlockAffinity` write lost to concurrent writers before
/// giving up (each round is one read and one write).
const AFFINITY_ATTEMPTS: usize = 50;

/// IPAM blocks as Kubernetes objects.
#[derive(Clone)]
pub struct KubeBlockStore {
    blocks: Api<IPAMBlock>,
    affinities: Api<BlockAffinity>,
    runtime: Runtime,
}

/// The object name of the block of `cidr`: the address with `-` for `.`
/// (IPv4) or all eight groups in hex (IPv6), then the prefix length.
pub fn block_name(cidr: &IpNetwork) -> String {
    let address = match cidr.network() {
        IpAddr::V4(a) => a.to_string().replace('.', "-"),
        IpAddr::V6(a) => a
            .segments()
            .iter()
            .map(|s| format!("{s:x}"))
            .collect::<Vec<_>>()
            .join("-"),
    };
    format!("{address}-{}", cidr.prefix())
}

/// The `BlockAffinity` of `node` for the block named `block`.
pub fn affinity_name(node: &str, block: &str) -> String {
    format!("{node}-{block}")
}

impl KubeBlockStore {
    /// `runtime` drives `client`'s requests.
    pub fn new(client: Client, runtime: Runtime) -> Self {
        KubeBlockStore {
            blocks: Api::all(client.clone()),
            affinities: Api::all(client),
            runtime,
        }
    }

    /// Writes the `BlockAffinity` of `block` (just created as `owner`):
    /// creates it, or takes over one left by an earlier block of that CIDR.
    async fn claim_affinity(&self, node: &str, owner: &IPAMBlock) -> Result<(), StoreError> {
        let block = owner.name_any();
        let name = affinity_name(node, &block);
        let owner_ref = owner.controller_owner_ref(&()).ok_or_else(|| {
            server_error(format!("create BlockAffinity {name}"), "block has no uid")
        })?;
        let mut wanted = BlockAffinity::new(
            &name,
            BlockAffinitySpec {
                node: node.to_string(),
                cidr: owner.spec.cidr.clone(),
                block,
            },
        );
        wanted.metadata.owner_references = Some(vec![owner_ref.clone()]);
        for _ in 0..AFFINITY_ATTEMPTS {
            match self
                .affinities
                .create(&PostParams::default(), &wanted)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if reason(&e) != Some(Reason::Exists) => {
                    return Err(api_error(format!("create BlockAffinity {name}"), e))
                }
                Err(_) => {}
            }
            // Left by an earlier block of that CIDR, not yet deleted.
            let Some(current) = self.read_affinity(&name).await? else {
                continue;
            };
            if owned_by(&current, &owner_ref) {
                return Ok(());
            }
            wanted.metadata.resource_version = current.resource_version();
            let replaced = self
                .affinities
                .replace(&name, &PostParams::default(), &wanted)
                .await;
            wanted.metadata.resource_version = None;
            match replaced {
                Ok(_) => return Ok(()),
                Err(e) if reason(&e).is_some() => {}
                Err(e) => return Err(api_error(format!("replace BlockAffinity {name}"), e)),
            }
        }
        Err(server_error(
            format!("claim BlockAffinity {name}"),
            "stayed contended",
        ))
    }

    /// Deletes the `BlockAffinity` of the deleted block `owner`, unless it
    /// already belongs to a newer block of that CIDR.
    async fn release_affinity(&self, node: &str, owner: &IPAMBlock) -> Result<(), StoreError> {
        let name = affinity_name(node, &owner.name_any());
        let Some(owner_ref) = owner.controller_owner_ref(&()) else {
            return Ok(());
        };
        for _ in 0..AFFINITY_ATTEMPTS {
            let Some(current) = self.read_affinity(&name).await? else {
                return Ok(());
            };
            if !owned_by(&current, &owner_ref) {
                return Ok(());
            }
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: current.resource_version(),
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            match self.affinities.delete(&name, &params).await {
                Ok(_) => return Ok(()),
                Err(e) if reason(&e).is_some() => {}
                Err(e) => return Err(api_error(format!("delete BlockAffinity {name}"), e)),
            }
        }
        Err(server_error(
            format!("release BlockAffinity {name}"),
            "stayed contended",
        ))
    }

    async fn read_affinity(&self, name: &str) -> Result<Option<BlockAffinity>, StoreError> {
        self.affinities
            .get_opt(name)
            .await
            .map_err(|e| api_error(format!("get BlockAffinity {name}"), e))
    }

    async fn create_block(&self, block: &Block) -> Result<(), StoreError> {
        let object = IPAMBlock {
            metadata: ObjectMeta {
                name: Some(block_name(&block.cidr)),
                ..ObjectMeta::default()
            },
            spec: to_spec(block),
        };
        let created = match self.blocks.create(&PostParams::default(), &object).await {
            Ok(c) => c,
            Err(e) => return Err(write_error("create", block.cidr, e)),
        };
        if let Some(node) = &block.affinity {
            // The block is written, and it is what allocators read: a
            // failure here leaves the affinity to be seen missing, not an
            // allocation lost.
            if let Err(e) = self.claim_affinity(node, &created).await {
                tracing::warn!(error = %e, "cannot write the block's BlockAffinity");
            }
        }
        Ok(())
    }

    async fn update_block(&self, block: &Block, version: &str) -> Result<(), StoreError> {
        let mut object = IPAMBlock::new(&block_name(&block.cidr), to_spec(block));
        object.metadata.resource_version = Some(version.to_string());
        self.blocks
            .replace(&object.name_any(), &PostParams::default(), &object)
            .await
            .map(drop)
            .map_err(|e| write_error("replace", block.cidr, e))
    }

    async fn delete_block(&self, cidr: IpNetwork, version: &str) -> Result<(), StoreError> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: Some(version.to_string()),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        let deleted = self
            .blocks
            .delete(&block_name(&cidr), &params)
            .await
            .map_err(|e| write_error("delete", cidr, e))?;
        // The API server answers with the object deleted (or, with
        // finalizers, being deleted).
        if let Some(owner) = deleted.left() {
            if let Some(node) = &owner.spec.affinity {
                // Owned by the block: the garbage collector removes it if
                // this fails.
                if let Err(e) = self.release_affinity(node, &owner).await {
                    tracing::warn!(error = %e, "cannot delete the block's BlockAffinity");
                }
            }
        }
        Ok(())
    }

    async fn list_blocks(&self) -> Result<Vec<Stored>, StoreError> {
        let list = self
            .blocks
            .list(&ListParams::default())
            .await
            .map_err(|e| api_error("list IPAMBlocks".to_string(), e))?;
        list.items.iter().map(from_object).collect()
    }
}

impl BlockStore for KubeBlockStore {
    fn list(&self) -> Result<Vec<Stored>, StoreError> {
        self.runtime.block_on(self.list_blocks())
    }

    fn create(&self, block: &Block) -> Result<(), StoreError> {
        self.runtime.block_on(self.create_block(block))
    }

    fn update(&self, block: &Block, version: &str) -> Result<(), StoreError> {
        self.runtime.block_on(self.update_block(block, version))
    }

    fn delete(&self, cidr: IpNetwork, version: &str) -> Result<(), StoreError> {
        self.runtime.block_on(self.delete_block(cidr, version))
    }
}

fn owned_by(affinity: &BlockAffinity, owner: &OwnerReference) -> bool {
    affinity
        .owner_references()
        .iter()
        .any(|o| o.uid == owner.uid)
}

/// The API server's answers that mean someone else wrote first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// 409 AlreadyExists (create).
    Exists,
    /// 409 Conflict (stale resourceVersion) or 404 (deleted meanwhile).
    Changed,
}

fn reason(e: &kube::Error) -> Option<Reason> {
    match e {
        kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists" => Some(Reason::Exists),
        kube::Error::Api(s) if s.code == 409 || s.code == 404 => Some(Reason::Changed),
        _ => None,
    }
}

fn write_error(operation: &str, cidr: IpNetwork, e: kube::Error) -> StoreError {
    match reason(&e) {
        Some(_) => StoreError::Conflict { cidr },
        None => api_error(
            format!("{operation} IPAMBlock {} ({cidr})", block_name(&cidr)),
            e,
        ),
    }
}

fn api_error(operation: String, e: kube::Error) -> StoreError {
    server_error(operation, &e.to_string())
}

fn server_error(operation: String, message: &str) -> StoreError {
    StoreError::Server {
        operation,
        message: message.to_string(),
    }
}

fn to_spec(block: &Block) -> IPAMBlockSpec {
    IPAMBlockSpec {
        cidr: block.cidr.to_string(),
        pool: block.pool.clone(),
        affinity: block.affinity.clone(),
        allocations: block
            .allocations
            .iter()
            .map(|(ip, a)| IPAMAllocation {
                address: ip.to_string(),
                container_id: a.handle.container_id.clone(),
                interface: a.handle.interface.clone(),
                node: a.node.clone(),
                netns: a.netns.clone(),
                pod: a.pod.clone(),
            })
            .collect(),
    }
}

/// The block an object holds, checked as a file's is.
pub(crate) fn from_object(object: &IPAMBlock) -> Result<Stored, StoreError> {
    let name = object.name_any();
    let corrupt = |reason: String| StoreError::CorruptObject {
        object: format!("IPAMBlock {name}"),
        reason,
    };
    let spec = &object.spec;
    let cidr: IpNetwork = spec
        .cidr
        .parse()
        .map_err(|e| corrupt(format!("spec.cidr {:?}: {e}", spec.cidr)))?;
    if block_name(&cidr) != name {
        return Err(corrupt(format!(
            "spec.cidr {cidr} belongs in IPAMBlock {}",
            block_name(&cidr)
        )));
    }
    let mut allocations = BTreeMap::new();
    for (i, a) in spec.allocations.iter().enumerate() {
        let ip: IpAddr = a.address.parse().map_err(|e| {
            corrupt(format!(
                "spec.allocations[{i}].address {:?}: {e}",
                a.address
            ))
        })?;
        let allocation = Allocation {
            handle: Handle::new(&a.container_id, &a.interface),
            node: a.node.clone(),
            netns: a.netns.clone(),
            pod: a.pod.clone(),
        };
        if allocations.insert(ip, allocation).is_some() {
            return Err(corrupt(format!(
                "spec.allocations[{i}].address {ip} is listed twice"
            )));
        }
    }
    let block = Block {
        cidr,
        pool: spec.pool.clone(),
        affinity: spec.affinity.clone(),
        allocations,
    };
    block.check().map_err(corrupt)?;
    let version = object
        .resource_version()
        .ok_or_else(|| corrupt("metadata.resourceVersion is missing".to_string()))?;
    Ok(Stored { block, version })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        let name = |c: &str| block_name(&c.parse().unwrap());
        assert_eq!(name("10.244.0.64/26"), "10-244-0-64-26");
        assert_eq!(name("fd00::40/122"), "fd00-0-0-0-0-0-0-40-122");
        assert_eq!(name("::/122"), "0-0-0-0-0-0-0-0-122");
        assert_eq!(
            affinity_name("node-1", "10-244-0-64-26"),
            "node-1-10-244-0-64-26"
        );
    }

    #[test]
    fn objects_round_trip_and_are_checked() {
        let mut block = Block::new("10.9.0.16/28".parse().unwrap(), "v4", Some("n1"));
        block.allocations.insert(
            "10.9.0.17".parse().unwrap(),
            Allocation {
                handle: Handle::new("c1", "eth0"),
                node: "n2".into(),
                netns: Some("/run/netns/p".into()),
                pod: Some("default/p".into()),
            },
        );
        let mut object = IPAMBlock::new("10-9-0-16-28", to_spec(&block));
        object.metadata.resource_version = Some("7".into());
        let stored = from_object(&object).unwrap();
        assert_eq!(
            stored,
            Stored {
                block,
                version: "7".into()
            }
        );

        let mut wrong = object.clone();
        wrong.spec.allocations[0].address = "10.9.1.1".into();
        let e = from_object(&wrong).unwrap_err().to_string();
        assert!(
            e.contains("IPAMBlock 10-9-0-16-28") && e.contains("10.9.1.1"),
            "{e}"
        );
        let mut misnamed = object.clone();
        misnamed.metadata.name = Some("x".into());
        let e = from_object(&misnamed).unwrap_err().to_string();
        assert!(e.contains("belongs in IPAMBlock 10-9-0-16-28"), "{e}");
        let mut twice = object;
        twice
            .spec
            .allocations
            .push(twice.spec.allocations[0].clone());
        let e = from_object(&twice).unwrap_err().to_string();
        assert!(
            e.contains("spec.allocations[1].address 10.9.0.17 is listed twice"),
            "{e}"
        );
    }
}
