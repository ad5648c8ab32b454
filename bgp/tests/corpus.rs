//! The short fuzz run of CI: every committed seed of the fuzz corpus
//! (`bgp/fuzz/seeds/`) through the same checks as the fuzz targets, without
//! cargo-fuzz. Seeds captured from FRR (`frr-*`, by
//! `tests/tests/fuzz_seeds.rs`) must also decode, and so must `addpath-*`
//! seeds (written by hand in RFC 7911's layout) with ADD-PATH; `fuzz-*` seeds are the
//! minimized corpus of long runs (`cargo fuzz cmin`).

#[path = "../fuzz/checks.rs"]
#[allow(dead_code)]
mod checks;

use std::path::{Path, PathBuf};

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn bgp_message_seeds() {
    let all = seeds("bgp_message");
    let frr: Vec<_> = all.iter().filter(|(n, _)| n.starts_with("frr-")).collect();
    assert!(frr.len() >= 8, "FRR seeds: {}", frr.len());
    for (name, data) in &all {
        let [four_octet, _, add_path] = checks::bgp_message(data);
        // FRR negotiated 4-octet AS numbers with the capturing peer.
        if name.starts_with("frr-") {
            assert!(four_octet, "{name} does not decode");
        }
        // UPDATEs with Path Identifiers (RFC 7911 section 3) before each
        // NLRI, IPv4 and in MP_REACH/MP_UNREACH.
        if name.starts_with("addpath-") {
            assert!(add_path, "{name} does not decode with ADD-PATH");
        }
    }
    println!("{} BGP seeds ({} from FRR)", all.len(), frr.len());
}

#[test]
fn bfd_packet_seeds() {
    let all = seeds("bfd_packet");
    let frr: Vec<_> = all.iter().filter(|(n, _)| n.starts_with("frr-")).collect();
    assert!(frr.len() >= 3, "FRR seeds: {}", frr.len());
    for (name, data) in &all {
        let decoded = checks::bfd_packet(data);
        if name.starts_with("frr-") {
            assert!(decoded, "{name} does not decode");
        }
    }
    println!("{} BFD seeds ({} from FRR)", all.len(), frr.len());
}
