//! What a failing lab test prints.

use super::Lab;
use crate::netns;

impl Lab {
    /// What a failing test should print: agents' log tails and tables, each
    /// node's proto-87 routes, FRR's logs and summary.
    pub fn diagnostics(&mut self) -> String {
        let mut s = format!(
            "===== diagnostics of lab {:?} ({})\n",
            self.name,
            self.dir.display()
        );
        for n in self.node_names() {
            let ns = self.ns(&n);
            if let Some(a) = self.agents.get_mut(&n) {
                let state = match a.check_running() {
                    Ok(()) => format!("running (pid {:?})", a.pid()),
                    Err(e) => format!("not running: {e}"),
                };
                s.push_str(&format!("----- agent of {n}: {state}\n"));
                s.push_str(&format!(
                    "--- {} (last 40 lines)\n{}\n",
                    a.log_path().display(),
                    a.log_tail(40)
                ));
                if a.is_running() {
                    let ctl = a.ctl();
                    for (t, r) in [("peers", ctl.peers_table()), ("routes", ctl.routes_table())] {
                        match r {
                            Ok(out) => s.push_str(&format!("--- starlingctl {t}\n{out}\n")),
                            Err(e) => s.push_str(&format!("--- starlingctl {t}: {e}\n")),
                        }
                    }
                }
            }
            for fam in ["-4", "-6"] {
                match netns::ip(&ns, &[fam, "route", "show"]) {
                    Ok(out) => s.push_str(&format!("--- ip {fam} route ({ns})\n{out}")),
                    Err(e) => s.push_str(&format!("--- ip {fam} route ({ns}): {e}\n")),
                }
            }
        }
        match self.frr.as_mut() {
            Some(f) => {
                if let Err(e) = f.check_running() {
                    s.push_str(&format!("----- FRR: {e}\n"));
                }
                s.push_str("----- FRR\n");
                s.push_str(&f.diagnostics(40));
            }
            None => s.push_str("----- FRR not started\n"),
        }
        s.push_str(&self.kube_diagnostics());
        s
    }
}
