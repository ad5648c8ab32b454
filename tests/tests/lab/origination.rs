//! What a node may announce (issue #18): only blocks and borrowed addresses
//! inside the enabled IPPools that select it.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use starling_lab::frr::Afi;
use starling_lab::{Check, Cidr, LabOptions};

use super::{ensure, run_lab, ROUTES_IN, SESSIONS_UP};

/// Anyone who can write an IPAMBlock could make a node announce, say, the
/// API server's address. A forged block file giving node-1 10.96.0.1/32
/// (outside every IPPool) is logged by node-1 with the block's name and
/// reaches neither the other nodes' kernels nor FRR, while node-1's
/// genuine blocks stay routed.
#[test]
fn a_block_outside_every_pool_is_not_announced() {
    run_lab("h1-", LabOptions::default(), |lab| {
        lab.wait_agents_established(SESSIONS_UP)?;
        lab.wait_routes_everywhere(ROUTES_IN)?;
        let blocks = lab.ipam_dir().join("blocks");
        let io = |what: &str, e: std::io::Error| starling_lab::Error::Setup(format!("{what}: {e}"));
        std::fs::create_dir_all(&blocks).map_err(|e| io("creating the IPAM blocks dir", e))?;
        let forged = r#"{"version": 900000, "block": {"cidr": "10.96.0.1/32", "pool": "forged", "affinity": "node-1"}}"#;
        std::fs::write(blocks.join("10.96.0.1-32.json"), forged)
            .map_err(|e| io("writing a forged block", e))?;

        let log = lab.agent("node-1")?.log_path();
        starling_lab::wait_until(
            Duration::from_secs(15),
            "node-1 to log the forged block by name",
            || {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let said = text
                    .lines()
                    .any(|l| l.contains("10-96-0-1-32") && l.contains("not announced"));
                Ok(Check::when(said, (), || "not logged yet".to_string()))
            },
        )?;
        // The log line comes from the refresh that refused the block: it
        // is in no table now, and so was never sent.
        let forged = IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1));
        let mut wrong = Vec::new();
        let own = lab.agent("node-1")?.ctl().routes()?;
        if own.iter().any(|r| r.prefix.starts_with("10.96.0.1/")) {
            wrong.push("node-1's table holds it".to_string());
        }
        for other in ["node-2", "node-3"] {
            if lab
                .kernel_routes(other)?
                .iter()
                .any(|(c, _)| c.addr == forged)
            {
                wrong.push(format!("{other} routes it"));
            }
            let missing = lab.missing_routes(other, &["node-1".to_string()])?;
            if !missing.is_empty() {
                wrong.push(format!("{other} lost node-1's genuine routes {missing:?}"));
            }
        }
        if lab
            .frr()?
            .table(Afi::Ipv4)?
            .prefixes()
            .contains(&Cidr::new(forged, 32))
        {
            wrong.push("FRR has it".to_string());
        }
        ensure(wrong.is_empty(), || wrong.join("; "))?;
        Ok(())
    });
}
