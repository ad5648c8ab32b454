//! Issue #18: a failed nft transaction is retried with backoff, not left
//! until some unrelated change comes (meanwhile a new pod would stay
//! unisolated), and `/readyz` says so until it succeeds. `nft` is a shell
//! script here that fails while a file exists and otherwise keeps the last
//! transaction it was given.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use starling_metrics::{Health, Metrics};
use starling_policy::apply::Nft;
use starling_policy::metrics::{PolicyMetrics, HEALTH_RULES};
use starling_policy::nft::Options;
use starling_policy::service::{self, Reporting};
use starling_policy::{Controller, Snapshot};
use tokio::sync::{oneshot, watch};

const POD_A: &str =
    "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x, labels: {app: web}}\n\
    spec: {nodeName: node-1, containers: [{name: c}]}\nstatus: {podIP: 10.244.1.2}\n";
const POD_B: &str =
    "apiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: x, labels: {app: web}}\n\
    spec: {nodeName: node-1, containers: [{name: c}]}\nstatus: {podIP: 10.244.1.3}\n";
const DENY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
    metadata: {name: deny, namespace: x}\nspec: {podSelector: {matchLabels: {app: web}}}\n";

fn snapshot(texts: &[&str]) -> Arc<Snapshot> {
    let mut s = Snapshot::default();
    let mut errors = Vec::new();
    for t in texts {
        s.add_text(t, "test", &mut errors);
    }
    assert!(errors.is_empty(), "{errors:?}");
    Arc::new(s)
}

/// Waits (polling, up to 20 s) until `what` holds.
async fn wait_until(name: &str, mut what: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !what() {
        assert!(Instant::now() < deadline, "timed out waiting: {name}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn rules_reason(health: &Health) -> Option<String> {
    health
        .reasons()
        .into_iter()
        .find(|(part, _)| part == HEALTH_RULES)
        .map(|(_, why)| why)
}

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test]
async fn a_failed_transaction_is_retried_until_it_applies() {
    let dir = Dir(std::env::temp_dir().join(format!("stp-retry-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let (fail, kept) = (dir.0.join("fail"), dir.0.join("transactions"));
    let script = format!(
        "if [ -e {f} ]; then cat >/dev/null; echo 'Error: Could not process rule: Cannot allocate memory' >&2; exit 1; fi; cat >> {k}",
        f = fail.display(),
        k = kept.display()
    );
    let nft = Nft {
        command: vec!["sh".into(), "-c".into(), script, "nft".into()],
    };
    let metrics = Metrics::new();
    let health = metrics.health().clone();
    health.not_ready(HEALTH_RULES, "no ruleset applied yet");
    let report = Reporting {
        policy: PolicyMetrics::register(&metrics),
        metrics: metrics.clone(),
        applied_file: None,
        log: None,
    };
    let (tx, rx) = watch::channel(snapshot(&[POD_A, DENY]));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let c = Controller::new("node-1", Options::default(), nft);
    let task = tokio::spawn(service::run(rx, c, report, async {
        let _ = stop_rx.await;
    }));

    wait_until("the first apply", || health.is_ready()).await;
    assert!(read(&kept).contains("10.244.1.2 : jump ingress"));

    // nft starts failing; pod b arrives: not applied, not ready, retrying.
    std::fs::write(&fail, "").unwrap();
    tx.send(snapshot(&[POD_A, POD_B, DENY])).unwrap();
    wait_until("not ready", || {
        rules_reason(&health).is_some_and(|r| r.contains("retrying in"))
    })
    .await;
    let why = rules_reason(&health).unwrap_or_default();
    assert!(why.contains("Cannot allocate memory"), "{why}");
    assert!(!read(&kept).contains("10.244.1.3"));
    // Tried again on its own (the error counter grows with no new snapshot).
    let errors = |m: &Metrics| {
        m.encode()
            .lines()
            .find_map(|l| {
                l.strip_prefix("starling_policy_apply_errors_total ")?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    wait_until("a second try", || errors(&metrics) >= 2).await;

    // The cause goes away: with no new change, b is isolated and the
    // controller is ready again. After a failure what nft holds is
    // unknown, so the whole table is replaced, in one transaction.
    std::fs::remove_file(&fail).unwrap();
    wait_until("ready again", || health.is_ready()).await;
    let all = read(&kept);
    let last = &all[all
        .rfind("delete table inet starling")
        .expect("a table replaced")..];
    assert!(last.contains("10.244.1.3 : jump ingress"), "{last}");
    assert!(last.contains("10.244.1.2 : jump ingress"), "{last}");

    let _ = stop_tx.send(());
    task.await.unwrap();
}
