//! `starling-lab up [--keep] | down`: the lab command (see examples/lab/lab.sh).
//!
//! `up` builds the lab (switch, ToR with FRR, three nodes with agents, two pods
//! each), waits until every BGP session is Established and every route is in,
//! prints what the agents, FRR and the kernels hold, checks pod-to-pod traffic
//! across nodes, then tears it all down (unless `--keep`). `down` removes a
//! kept or crashed lab. `up --kubernetes` runs the lab in Kubernetes mode: a
//! real control plane, every component with `--datastore kubernetes`
//! (see `starling_lab::lab::kubernetes`).

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use starling_lab::{netns, probe, state, wait, Lab, LabOptions, Result};

#[derive(Parser)]
#[command(name = "starling-lab", about = "Starling's network-namespace lab")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the lab, wait for convergence, show it, check pod traffic.
    Up {
        /// Leave the lab running afterwards (remove it with `starling-lab down`).
        #[arg(long)]
        keep: bool,
        /// Namespace prefix (the default lab has none).
        #[arg(long, default_value = "")]
        prefix: String,
        /// Kubernetes mode: etcd, kube-apiserver and kube-controller-manager
        /// in namespace `cp`; the agents, starling-policy and starling-cni
        /// read and write the API.
        #[arg(long)]
        kubernetes: bool,
    },
    /// Remove a kept or crashed lab.
    Down {
        /// Namespace prefix of the lab to remove.
        #[arg(long, default_value = "")]
        prefix: String,
    },
}

const SESSIONS_UP: Duration = Duration::from_secs(60);
const ROUTES_IN: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let cli = Cli::parse();
    wait::install_interrupt_handlers();
    let result = match cli.command {
        Command::Up {
            keep,
            prefix,
            kubernetes,
        } => up(&prefix, keep, kubernetes),
        Command::Down { prefix } => down(&prefix),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("starling-lab: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn step(s: &str) {
    eprintln!("==> {s}");
}

fn up(prefix: &str, keep: bool, kubernetes: bool) -> Result<()> {
    if kubernetes {
        step("building the lab in Kubernetes mode: switch, control plane (cp), tor (FRR), node-1..3 (agents, starling-policy), two pods per node");
    } else {
        step("building the lab: switch, tor (FRR), node-1..3 (agents), two pods per node");
    }
    let options = LabOptions {
        kubernetes,
        ..LabOptions::default()
    };
    let mut lab = Lab::up(prefix, options)?;
    match converge_and_show(&mut lab) {
        Ok(()) => {
            if keep {
                lab.set_keep(true);
                print_keep_help(&lab);
            } else {
                step("tearing down (use --keep to leave the lab running)");
                lab.teardown()?;
            }
            Ok(())
        }
        Err(e) => {
            eprintln!("starling-lab: error: {e}");
            eprintln!("{}", lab.diagnostics());
            step("tearing down");
            lab.teardown()?;
            Err(e)
        }
    }
}

fn converge_and_show(lab: &mut Lab) -> Result<()> {
    step("waiting for FRR's six sessions (3 nodes x IPv4/IPv6) to be Established");
    lab.wait_frr_established(SESSIONS_UP)?;
    step("waiting for every agent's sessions (mesh and tor, IPv4/IPv6) to be Established");
    lab.wait_agents_established(SESSIONS_UP)?;
    step("waiting for every node to route every other node's pod CIDRs");
    lab.wait_routes_everywhere(ROUTES_IN)?;
    lab.wait_frr_routes(ROUTES_IN)?;

    for n in lab.node_names() {
        let ctl = lab.agent(&n)?.ctl();
        println!("\n### {n}: starlingctl peers");
        print!("{}", ctl.peers_table()?);
        println!("\n### {n}: starlingctl routes");
        print!("{}", ctl.routes_table()?);
    }
    println!("\n### tor: show bgp summary");
    print!("{}", lab.frr()?.vtysh("show bgp summary")?);
    for n in lab.node_names() {
        let ns = lab.ns(&n);
        println!("\n### {n}: ip route show proto 87 (IPv4 and IPv6)");
        print!(
            "{}",
            netns::ip(&ns, &["-4", "route", "show", "proto", "87"])?
        );
        print!(
            "{}",
            netns::ip(&ns, &["-6", "route", "show", "proto", "87"])?
        );
    }

    if let Ok(kube) = lab.kube() {
        println!("\n### kubectl get nodes,ippools,ipamblocks,bgppeers,bgpnodestatuses");
        print!(
            "{}",
            kube.kubectl(&[
                "get",
                "nodes,ippools,ipamblocks,bgppeers,bgpnodestatuses",
                "-o",
                "wide"
            ])?
        );
    }

    let from = lab.pod("node-1", "pod-a")?.clone();
    let to = lab.pod("node-3", "pod-a")?.clone();
    for addr in [to.v4(), to.v6()] {
        let fam = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
        println!("\n### {fam}: node-1/pod-a -> node-3/pod-a ({addr})");
        print!("{}", probe::ping(&from.ns, addr, Duration::from_secs(10))?);
        let r = probe::tcp_exchange_until(&from.ns, &to.ns, addr, Duration::from_secs(10))?;
        println!("{r}");
    }
    println!("\nlab OK: all sessions Established, routes everywhere, pods talk across nodes (IPv4 and IPv6)");
    Ok(())
}

fn print_keep_help(lab: &Lab) {
    let dir = lab.state_dir().display().to_string();
    let p = lab.prefix();
    let pod_a = lab
        .pod("node-1", "pod-a")
        .map(|p| p.ns.clone())
        .unwrap_or_default();
    let target: IpAddr = lab
        .pod("node-3", "pod-a")
        .map(|p| p.v6())
        .unwrap_or(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST));
    let down = if p.is_empty() {
        "starling-lab down".to_string()
    } else {
        format!("starling-lab down --prefix {p}")
    };
    if let Ok(kube) = lab.kube() {
        let kubectl = kube.binary("kubectl").display().to_string();
        let admin = kube.admin_kubeconfig().display().to_string();
        println!(
            "\nKubernetes (the API server at https://10.0.0.100:6443, from the namespace {p}cp):\
             \n  ip netns exec {p}cp {kubectl} --kubeconfig {admin} get bgpnodestatuses -o wide\
             \n  (then kubectl apply -f your BGPPeers, IPPools, NetworkPolicies the same way)"
        );
    }
    println!(
        "\nThe lab is kept running. State, logs and sockets: {dir}\n\
         \n  starlingctl --socket {dir}/node-1/ctl.sock peers\
         \n  vtysh --vty_socket {dir}/tor -c 'show bgp summary'\
         \n  ip netns exec {pod_a} ping {target}\
         \n  tail -f {dir}/node-1/agent.log\
         \n\nRemove it with: {down}   (or examples/lab/lab.sh down)"
    );
}

fn down(prefix: &str) -> Result<()> {
    starling_lab::lab::check_root()?;
    let name = state::lab_name(prefix)?;
    let _lock = state::FileLock::try_acquire(&state::lab_lock_path(&name))?.ok_or_else(|| {
        starling_lab::Error::Setup(format!(
            "lab {name:?} is in use by a running `starling-lab up` or test"
        ))
    })?;
    let done = state::cleanup(prefix)?;
    if done.is_empty() {
        println!("nothing to clean for lab {name:?}");
    }
    for d in done {
        println!("{d}");
    }
    Ok(())
}
