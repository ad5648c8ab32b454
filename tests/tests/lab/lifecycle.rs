//! The lab itself: its topology and pods, and a kept lab cleaned by the
//! next `up`.

use std::net::IpAddr;
use std::time::Duration;

use starling_lab::frr::Afi;
use starling_lab::{netns, probe, state, topology, Error, Lab, LabOptions};

use super::{assert_no_leftovers, ensure, run_lab, LOCK_WAIT};

#[test]
fn topology_and_pods() {
    let prefix = "t1-";
    run_lab(prefix, LabOptions::without_agents(), |lab| {
        // Every namespace exists: switch, ToR, three nodes, six pods.
        ensure(lab.namespaces().len() == 11, || {
            format!(
                "expected 11 namespaces, the lab made {:?}",
                lab.namespaces()
            )
        })?;
        for ns in lab.namespaces().to_vec() {
            ensure(netns::exists(&ns), || format!("namespace {ns} missing"))?;
        }
        // starling-cni plugged the pods from the lab's IPPools: each node
        // holds one block per family, its pod CIDR, and its pods' addresses
        // are in it.
        let blocks: std::collections::BTreeSet<String> =
            std::fs::read_dir(lab.ipam_dir().join("blocks"))
                .map_err(|e| Error::Setup(format!("reading the IPAM store: {e}")))?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect();
        let want: std::collections::BTreeSet<String> = lab
            .nodes()
            .iter()
            .flat_map(|n| n.pod_cidrs())
            .map(|c| format!("{}.json", c.to_string().replace('/', "-")))
            .collect();
        ensure(blocks == want, || {
            format!("IPAM blocks {blocks:?}, expected {want:?}")
        })?;
        ensure(lab.read_datastore()?.contains("kind: IPPool"), || {
            "no IPPool in the lab's datastore".into()
        })?;
        for p in lab.pods() {
            let n = lab.node(&p.spec.node)?;
            ensure(
                n.pod_cidr_v4.contains(p.v4()) && n.pod_cidr_v6.contains(p.v6()),
                || format!("{p:?} is outside {}'s pod CIDRs", n.name),
            )?;
        }
        // The fabric: each node reaches the ToR over IPv4 and IPv6.
        for n in lab.nodes().to_vec() {
            for tor in [IpAddr::V4(topology::TOR_V4), IpAddr::V6(topology::TOR_V6)] {
                probe::ping(&lab.ns(&n.name), tor, Duration::from_secs(10))?;
            }
        }
        // Pods on the same node talk, both families, ping and TCP.
        for n in lab.nodes().to_vec() {
            let a = lab.pod(&n.name, "pod-a")?.clone();
            let b = lab.pod(&n.name, "pod-b")?.clone();
            for addr in [b.v4(), b.v6()] {
                probe::ping(&a.ns, addr, Duration::from_secs(10))?;
                let r = probe::tcp_exchange_until(&a.ns, &b.ns, addr, Duration::from_secs(10))?;
                println!("{}: {r}", n.name);
            }
            // The node reaches its pods.
            probe::ping(&lab.ns(&n.name), a.v6(), Duration::from_secs(10))?;
        }
        // Without agents there is no route between nodes' pods (the ToR does
        // not forward), so later tests' pings prove the agents' routes.
        let from = lab.pod("node-1", "pod-a")?.ns.clone();
        let to = lab.pod("node-3", "pod-a")?.v4();
        ensure(probe::ping_once(&from, to).is_err(), || {
            "node-1 pod-a reached node-3 pod-a without any agent".into()
        })?;

        // FRR runs, its summary parses and lists its six neighbors, none up.
        let frr = lab.frr_mut()?;
        frr.check_running()?;
        let s = frr.summary()?;
        println!("FRR summary: {}", s.brief());
        let v4 = s.ipv4_unicast.as_ref().map_or(0, |a| a.peers.len());
        let v6 = s.ipv6_unicast.as_ref().map_or(0, |a| a.peers.len());
        ensure(v4 == 3 && v6 == 3, || {
            format!("FRR neighbors: {}", s.brief())
        })?;
        for n in lab.frr_neighbors() {
            let nb = s.neighbor(n);
            ensure(
                nb.is_some_and(|x| x.remote_as == topology::CLUSTER_ASN),
                || format!("FRR neighbor {n}: {nb:?}"),
            )?;
            ensure(!s.is_established(n), || {
                format!("{n} Established without agent")
            })?;
        }
        ensure(
            s.ipv4_unicast
                .as_ref()
                .is_some_and(|a| a.asn == topology::TOR_ASN),
            || "FRR's AS is not 65000".into(),
        )?;
        let t = lab.frr()?.table(Afi::Ipv4)?;
        ensure(t.prefixes().is_empty(), || {
            format!("unexpected routes {t:?}")
        })?;
        Ok(())
    });
}

#[test]
fn kept_lab_is_cleaned_by_next_up() {
    let prefix = "t6-";
    let _lock = state::tests_lock(LOCK_WAIT).unwrap_or_else(|e| panic!("{e}"));
    let options = LabOptions {
        agents: false,
        ..LabOptions::default()
    };
    let mut lab = Lab::up(prefix, options.clone()).unwrap_or_else(|e| panic!("up: {e}"));
    let old_pids = lab.frr().map(|f| f.pids()).unwrap_or_default();
    assert_eq!(old_pids.len(), 2, "zebra and bgpd pids");
    lab.set_keep(true);
    drop(lab);
    // Still there, as a crashed or `--keep` run leaves it.
    assert!(netns::exists(&format!("{prefix}tor")));
    assert!(old_pids.iter().all(|p| starling_lab::cmd::pid_alive(*p)));
    // The next lab of the same prefix cleans it up first.
    let lab = Lab::up(prefix, options).unwrap_or_else(|e| panic!("second up: {e}"));
    assert!(
        old_pids.iter().all(|p| !starling_lab::cmd::pid_alive(*p)),
        "old FRR still running"
    );
    let dir = lab.state_dir().to_path_buf();
    drop(lab);
    assert_no_leftovers(prefix, &dir);
}
