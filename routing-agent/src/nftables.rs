//! The agent's nftables tables, each written whole in one `nft -f -`
//! transaction: replacing a table is "create it if missing, delete it,
//! define it" in one script, so the kernel swaps the old rules for the new
//! ones atomically, never leaving a moment without them, and a table left by
//! a killed agent is simply replaced. Nothing outside the agent's own
//! tables is touched.
//!
//! Used by `pod_guard` (table `inet starling-guard`); any other agent table
//! can use it the same way.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// `nft` could not be run, or refused a script.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nft refused the transaction for table {table} ({status}): {stderr}")]
    Rejected {
        table: String,
        status: String,
        stderr: String,
    },
}

/// One table of the agent's: its family (`inet`, `ip`, `ip6`) and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    pub family: &'static str,
    pub name: &'static str,
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.family, self.name)
    }
}

impl Table {
    /// The script that replaces the table with one whose body (sets,
    /// counters, chains) is `body`.
    pub fn replace_script(&self, body: &str) -> String {
        format!("table {self} {{}}\ndelete table {self}\ntable {self} {{\n{body}}}\n")
    }

    /// The script that removes the table (there or not).
    pub fn delete_script(&self) -> String {
        format!("table {self} {{}}\ndelete table {self}\n")
    }
}

/// How `nft` is run (`nft` from `PATH` by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nft {
    program: String,
}

impl Default for Nft {
    fn default() -> Self {
        Nft {
            program: "nft".to_string(),
        }
    }
}

impl Nft {
    /// Runs `script` (about `table`, which errors name) as one `nft -f -`
    /// transaction: for changes other than a whole replacement (adding and
    /// flushing chains, set elements).
    pub async fn apply(&self, table: Table, script: &str) -> Result<(), NftError> {
        self.run(table, &["-f", "-"], script).await.map(drop)
    }

    /// Replaces `table` with `body` in one transaction.
    pub async fn replace(&self, table: Table, body: &str) -> Result<(), NftError> {
        self.apply(table, &table.replace_script(body)).await
    }

    /// Removes `table` (nothing if it is not there).
    pub async fn delete(&self, table: Table) -> Result<(), NftError> {
        self.apply(table, &table.delete_script()).await
    }

    /// `nft -j list counters table ...`: the table's named counters, as
    /// (name, packets).
    pub async fn counters(&self, table: Table) -> Result<Vec<(String, u64)>, NftError> {
        let args = ["-j", "list", "counters", "table", table.family, table.name];
        let out = self.run(table, &args, "").await?;
        Ok(parse_counters(&out))
    }

    async fn run(&self, table: Table, args: &[&str], stdin: &str) -> Result<String, NftError> {
        let spawn_error = |source| NftError::Spawn {
            program: self.program.clone(),
            source,
        };
        let mut child = Command::new(&self.program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_error)?;
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(stdin.as_bytes())
                .await
                .map_err(spawn_error)?;
        }
        let out = child.wait_with_output().await.map_err(spawn_error)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(NftError::Rejected {
                table: table.to_string(),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }
}

/// The named counters of `nft -j list counters` output.
fn parse_counters(json: &str) -> Vec<(String, u64)> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let Some(items) = v.get("nftables").and_then(|n| n.as_array()) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|i| i.get("counter"))
        .filter_map(|c| {
            let name = c.get("name")?.as_str()?.to_string();
            Some((name, c.get("packets")?.as_u64()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Table = Table {
        family: "inet",
        name: "starling-test",
    };

    #[test]
    fn replacing_is_one_script_that_works_with_or_without_the_table() {
        assert_eq!(
            T.replace_script("\tchain c {}\n"),
            "table inet starling-test {}\ndelete table inet starling-test\n\
             table inet starling-test {\n\tchain c {}\n}\n"
        );
        assert_eq!(
            T.delete_script(),
            "table inet starling-test {}\ndelete table inet starling-test\n"
        );
    }

    #[test]
    fn counters_are_read_from_nft_json() {
        let out = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"counter": {"family": "inet", "name": "spoofed_ipv4", "table": "t", "handle": 2, "packets": 7, "bytes": 588}},
            {"counter": {"family": "inet", "name": "spoofed_ipv6", "table": "t", "handle": 3, "packets": 0, "bytes": 0}}]}"#;
        assert_eq!(
            parse_counters(out),
            vec![
                ("spoofed_ipv4".to_string(), 7),
                ("spoofed_ipv6".to_string(), 0)
            ]
        );
        assert!(parse_counters("not json").is_empty());
    }
}
