//! Smoke test of the receive benchmark's harness (`starling-bench`): a
//! small stream fed to each receiver, which must end up holding every
//! prefix, while Starling keeps a second session with 1 s keepalive / 3 s
//! hold timers up (the peer's hold timer never expires). Behaviour, not
//! timing. Run as root:
//! `cargo test -p starling-lab --test bench`. BIRD is left out, with a
//! note, where it is not installed (tests/install-deps.sh does not install
//! it; tests/bench.sh does).

use std::time::Duration;

use starling_lab::bench::{self, Kind, Options};
use starling_lab::{netns, state};

const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);
const PREFIX: &str = "tbench-";
const PREFIXES: u64 = 20_000;

#[test]
fn every_receiver_holds_the_whole_stream() {
    let _lock = state::tests_lock(LOCK_WAIT).unwrap_or_else(|e| panic!("{e}"));
    let stream = bench::encode_stream(PREFIXES).unwrap_or_else(|e| panic!("{e}"));
    let opts = Options {
        prefix: PREFIX.into(),
        timeout: Duration::from_secs(20),
        progress: None,
        ..Options::default()
    };
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| *k != Kind::Bird || k.available())
        .collect();
    if !kinds.contains(&Kind::Bird) {
        println!("note: BIRD is not installed (apt-get install -y bird2); testing without it");
    }
    let results = bench::run(&kinds, &[stream], &opts);
    println!("{}", bench::report::table(&results));
    let left: Vec<String> = netns::list()
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    let dir = state::state_dir(PREFIX).unwrap_or_else(|e| panic!("{e}"));
    assert!(!dir.exists(), "{} left", dir.display());
    assert_eq!(results.len(), kinds.len());
    for (kind, r) in results {
        match r {
            Ok(o) => {
                assert_eq!(o.kind, kind);
                assert_eq!(o.prefixes, PREFIXES);
                assert!(o.peak_rss_kib.is_some_and(|k| k > 0), "{kind}: no RSS");
                assert!(o.polls >= 1);
                if kind == Kind::Starling {
                    if let Err(why) = &o.watcher {
                        panic!("starling: the 1s/3s session went down during the load: {why}");
                    }
                }
            }
            Err(e) => panic!("{kind}: {e}"),
        }
    }
}
