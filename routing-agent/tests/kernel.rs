//! `Kernel` against a real kernel, each test in a network namespace of its own
//! with a veth interface holding 10.0.0.11/24 and fd00::11/64. Assertions are
//! on what `ip -j route show proto 87` prints, i.e. what a user would see.
//! Skipped (with a message) when not root or namespaces are unavailable.

use std::fs::File;
use std::future::Future;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::process::Command;

use ipnetwork::IpNetwork;
use serde_json::Value;
use starling_agent::kernel::{Change, Kernel, KernelError, KernelRoute};

/// A network namespace deleted on drop, even when the test fails.
struct Netns {
    name: String,
}

impl Netns {
    /// A fresh namespace with `lo` up and veth `v0` (peer `v1`) addressed;
    /// `None`, after saying why, when this machine cannot run the test.
    fn create(test: &str) -> Option<Netns> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping {test}: needs root to create network namespaces");
            return None;
        }
        let name = format!("starling-kt-{}-{test}", std::process::id());
        let status = Command::new("ip").args(["netns", "add", &name]).status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("skipping {test}: `ip netns add {name}` failed");
            return None;
        }
        let netns = Netns { name };
        netns.ip("link add v0 type veth peer name v1");
        netns.ip("link set lo up");
        netns.ip("link set v0 up");
        netns.ip("link set v1 up");
        netns.ip("addr add 10.0.0.11/24 dev v0");
        netns.ip("addr add fd00::11/64 dev v0 nodad");
        Some(netns)
    }

    /// Run `ip -n NAME ARGS`, failing the test if it fails; returns stdout.
    fn ip(&self, args: &str) -> String {
        let output = Command::new("ip")
            .args(["-n", &self.name])
            .args(args.split_whitespace())
            .output()
            .expect("run ip");
        assert!(
            output.status.success(),
            "ip -n {} {args}: {}",
            self.name,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `ip -j [-6] route show ARGS` condensed to one line per route:
    /// `10.1.0.0/24 via 10.0.0.12,10.0.0.13` or `blackhole 10.2.0.0/24`.
    fn routes(&self, args: &str) -> Vec<String> {
        let json = self.ip(&format!("-j {args}"));
        let routes: Vec<Value> = serde_json::from_str(&json).expect("ip -j prints JSON");
        routes.iter().map(condense).collect()
    }

    /// Our routes, IPv4 then IPv6.
    fn ours(&self) -> Vec<String> {
        let mut routes = self.routes("route show proto 87");
        routes.extend(self.routes("-6 route show proto 87"));
        routes
    }

    /// Run `body` with a `Kernel` opened inside this namespace, on a thread of
    /// its own (setns changes the calling thread only).
    fn run<F, Fut>(&self, body: F)
    where
        F: FnOnce(Kernel) -> Fut + Send,
        Fut: Future<Output = ()>,
    {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let file = File::open(&path).expect("open netns file");
                    // SAFETY: a valid namespace fd; only this thread moves.
                    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("tokio runtime");
                    runtime.block_on(async move {
                        let kernel = Kernel::new().expect("netlink socket");
                        body(kernel).await;
                    });
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        });
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn condense(route: &Value) -> String {
    let dst = route["dst"].as_str().unwrap_or("?");
    if route["type"] == "blackhole" {
        return format!("blackhole {dst}");
    }
    let hops: Vec<&str> = match route["nexthops"].as_array() {
        Some(hops) => hops
            .iter()
            .filter_map(|hop| hop["gateway"].as_str())
            .collect(),
        None => route["gateway"].as_str().into_iter().collect(),
    };
    format!("{dst} via {}", hops.join(","))
}

fn net(s: &str) -> IpNetwork {
    s.parse().expect("test prefix")
}

fn via(prefix: &str, hops: &[&str]) -> KernelRoute {
    KernelRoute::Via {
        prefix: net(prefix),
        next_hops: hops
            .iter()
            .map(|hop| hop.parse::<IpAddr>().expect("test address"))
            .collect(),
        device: None,
    }
}

/// One route in through the speaker's path, [`Kernel::apply`].
fn replace(kernel: &Kernel, route: &KernelRoute) -> Result<(), KernelError> {
    let result = kernel.apply(&[Change::Replace(route.clone())]).pop();
    result.flatten().map_or(Ok(()), Err)
}

/// One route out through [`Kernel::apply`].
fn delete(kernel: &Kernel, prefix: IpNetwork) -> Result<(), KernelError> {
    let result = kernel.apply(&[Change::Delete(prefix)]).pop();
    result.flatten().map_or(Ok(()), Err)
}

fn blackhole(prefix: &str) -> KernelRoute {
    KernelRoute::Blackhole {
        prefix: net(prefix),
    }
}

#[test]
fn flush_stale_removes_only_our_routes_in_the_main_table() {
    let Some(ns) = Netns::create("flush") else {
        return;
    };
    ns.ip("route add 10.1.0.0/24 via 10.0.0.12 proto 87");
    ns.ip("route add 10.2.0.0/24 proto 87 nexthop via 10.0.0.12 nexthop via 10.0.0.13");
    ns.ip("route add blackhole 10.3.0.0/24 proto 87");
    ns.ip("-6 route add fd00:1::/64 via fd00::12 proto 87");
    ns.ip("-6 route add fd00:2::/64 proto 87 nexthop via fd00::12 nexthop via fd00::13");
    ns.ip("route add 10.9.0.0/24 via 10.0.0.12 proto static");
    ns.ip("-6 route add fd00:9::/64 via fd00::12 proto bird");
    ns.ip("route add 10.8.0.0/24 via 10.0.0.12 proto 87 table 100");

    ns.run(|kernel| async move {
        assert_eq!(kernel.flush_stale().await.expect("flush"), 5);
        assert_eq!(kernel.flush_stale().await.expect("second flush"), 0);
    });

    assert_eq!(ns.ours(), Vec::<String>::new());
    assert_eq!(
        ns.routes("route show 10.9.0.0/24"),
        ["10.9.0.0/24 via 10.0.0.12"]
    );
    assert_eq!(
        ns.routes("-6 route show fd00:9::/64"),
        ["fd00:9::/64 via fd00::12"]
    );
    assert_eq!(
        ns.routes("route show table 100 proto 87"),
        ["10.8.0.0/24 via 10.0.0.12"]
    );
}

#[test]
fn replace_moves_between_one_next_hop_and_ecmp() {
    let Some(ns) = Netns::create("replace") else {
        return;
    };
    let v4 = [
        via("10.1.0.0/24", &["10.0.0.12"]),
        via("10.1.0.0/24", &["10.0.0.12", "10.0.0.13"]),
        via("10.1.0.0/24", &["10.0.0.13"]),
    ];
    let v6 = [
        via("fd00:1::/64", &["fd00::12"]),
        via("fd00:1::/64", &["fd00::12", "fd00::13"]),
        via("fd00:1::/64", &["fd00::13"]),
    ];
    let seen = [
        ["10.1.0.0/24 via 10.0.0.12", "fd00:1::/64 via fd00::12"],
        [
            "10.1.0.0/24 via 10.0.0.12,10.0.0.13",
            "fd00:1::/64 via fd00::12,fd00::13",
        ],
        ["10.1.0.0/24 via 10.0.0.13", "fd00:1::/64 via fd00::13"],
    ];
    for step in 0..3 {
        let (route4, route6) = (v4[step].clone(), v6[step].clone());
        ns.run(|kernel| async move {
            replace(&kernel, &route4).expect("replace v4");
            replace(&kernel, &route6).expect("replace v6");
            assert_eq!(kernel.list().await.expect("list"), [route4, route6]);
        });
        assert_eq!(ns.ours(), seen[step], "step {step}");
    }

    // Replacing the same route again is not an error, and duplicates collapse.
    ns.run(|kernel| async move {
        let route = via("10.1.0.0/24", &["10.0.0.13", "10.0.0.13"]);
        replace(&kernel, &route).expect("replace again");
    });
    assert_eq!(ns.ours(), seen[2]);
}

#[test]
fn blackholes_v4_and_v6_and_back_to_a_gateway() {
    let Some(ns) = Netns::create("blackhole") else {
        return;
    };
    ns.run(|kernel| async move {
        replace(&kernel, &blackhole("10.2.0.0/24")).expect("v4");
        replace(&kernel, &blackhole("fd00:2::/64")).expect("v6");
        assert_eq!(
            kernel.list().await.expect("list"),
            [blackhole("10.2.0.0/24"), blackhole("fd00:2::/64")]
        );
    });
    assert_eq!(
        ns.ours(),
        ["blackhole 10.2.0.0/24", "blackhole fd00:2::/64"]
    );

    ns.run(|kernel| async move {
        replace(&kernel, &via("10.2.0.0/24", &["10.0.0.12"])).expect("v4 over blackhole");
        replace(&kernel, &via("fd00:2::/64", &["fd00::12"])).expect("v6 over blackhole");
    });
    assert_eq!(
        ns.ours(),
        ["10.2.0.0/24 via 10.0.0.12", "fd00:2::/64 via fd00::12"]
    );
}

#[test]
fn delete_removes_ours_only_and_missing_is_ok() {
    let Some(ns) = Netns::create("delete") else {
        return;
    };
    ns.ip("route add 10.9.0.0/24 via 10.0.0.12 proto static");
    ns.ip("-6 route add fd00:9::/64 via fd00::12 proto static");
    ns.run(|kernel| async move {
        replace(&kernel, &via("10.1.0.0/24", &["10.0.0.12", "10.0.0.13"])).expect("ecmp v4");
        replace(&kernel, &via("fd00:1::/64", &["fd00::12", "fd00::13"])).expect("ecmp v6");
        replace(&kernel, &blackhole("10.2.0.0/24")).expect("bh v4");
        replace(&kernel, &blackhole("fd00:2::/64")).expect("bh v6");

        for prefix in ["10.1.0.0/24", "fd00:1::/64", "10.2.0.0/24", "fd00:2::/64"] {
            delete(&kernel, net(prefix)).expect("delete");
            delete(&kernel, net(prefix)).expect("delete again");
        }
        // Never a route of somebody else's.
        delete(&kernel, net("10.9.0.0/24")).expect("not ours v4");
        delete(&kernel, net("fd00:9::/64")).expect("not ours v6");
        assert_eq!(kernel.list().await.expect("list"), []);
    });
    assert_eq!(ns.ours(), Vec::<String>::new());
    assert_eq!(
        ns.routes("route show 10.9.0.0/24"),
        ["10.9.0.0/24 via 10.0.0.12"]
    );
    assert_eq!(
        ns.routes("-6 route show fd00:9::/64"),
        ["fd00:9::/64 via fd00::12"]
    );
}

#[test]
fn list_shows_only_our_routes() {
    let Some(ns) = Netns::create("list") else {
        return;
    };
    ns.ip("route add 10.9.0.0/24 via 10.0.0.12 proto static");
    ns.ip("route add 10.4.0.0/24 via 10.0.0.14 proto 87");
    ns.run(|kernel| async move {
        replace(&kernel, &via("10.1.0.0/24", &["10.0.0.12", "10.0.0.13"])).expect("ecmp");
        replace(&kernel, &blackhole("fd00:2::/64")).expect("bh");
        assert_eq!(
            kernel.list().await.expect("list"),
            [
                via("10.1.0.0/24", &["10.0.0.12", "10.0.0.13"]),
                via("10.4.0.0/24", &["10.0.0.14"]),
                blackhole("fd00:2::/64"),
            ]
        );
    });
}

#[test]
fn bad_routes_are_refused_naming_the_prefix() {
    let Some(ns) = Netns::create("invalid") else {
        return;
    };
    ns.run(|kernel| async move {
        let refused = [
            via("10.1.0.1/24", &["10.0.0.12"]),
            via("10.1.0.0/24", &[]),
            via("10.1.0.0/24", &["fd00::12"]),
            via("fd00:1::/64", &["10.0.0.12"]),
        ];
        for route in refused {
            let err = replace(&kernel, &route).expect_err("refused");
            assert!(matches!(err, KernelError::InvalidRoute { .. }), "{err}");
            assert!(err.to_string().contains("/24") || err.to_string().contains("/64"));
        }
        // The kernel's own refusal: the gateway is on no connected subnet.
        let err =
            replace(&kernel, &via("10.5.0.0/24", &["192.0.2.1"])).expect_err("unreachable gateway");
        assert!(err.to_string().contains("10.5.0.0/24"), "{err}");
        assert_eq!(kernel.list().await.expect("list"), []);
    });
}

/// The speaker's path: thousands of changes a call, many per netlink
/// datagram, each refusal naming its prefix.
#[test]
fn batches_install_and_remove_thousands_of_routes() {
    let Some(ns) = Netns::create("batch") else {
        return;
    };
    ns.ip("route add 10.9.0.0/24 via 10.0.0.12 proto static");
    let v4 = |i: u32| format!("11.{}.{}.0/24", i >> 8, i & 0xff);
    let mut changes: Vec<Change> = (0..4000)
        .map(|i| Change::Replace(via(&v4(i), &["10.0.0.12"])))
        .collect();
    changes.push(Change::Replace(via(
        "10.1.0.0/24",
        &["10.0.0.12", "10.0.0.13"],
    )));
    changes.push(Change::Replace(via(
        "fd00:1::/64",
        &["fd00::12", "fd00::13"],
    )));
    changes.push(Change::Replace(blackhole("10.2.0.0/24")));
    changes.push(Change::Replace(via("fd00:3::/64", &["fd00::12"])));
    // Refused by the kernel (no connected subnet), and by us (host bits).
    changes.push(Change::Replace(via("10.5.0.0/24", &["192.0.2.1"])));
    changes.push(Change::Replace(via("10.6.0.1/24", &["10.0.0.12"])));
    // The last change per prefix wins, in order.
    changes.push(Change::Replace(via(&v4(7), &["10.0.0.13"])));
    changes.push(Change::Delete(net(&v4(8))));
    ns.run(|kernel| {
        let changes = changes.clone();
        async move {
            let results = kernel.apply(&changes);
            let refused: Vec<String> = results.iter().flatten().map(ToString::to_string).collect();
            assert_eq!(refused.len(), 2, "{refused:?}");
            assert!(refused[0].contains("10.5.0.0/24"), "{refused:?}");
            assert!(refused[1].contains("10.6.0.1/24"), "{refused:?}");
        }
    });
    let ours = ns.ours();
    assert_eq!(ours.len(), 4000 - 1 + 4, "{:?}", &ours[..10]);
    for expected in [
        "11.0.0.0/24 via 10.0.0.12",
        "11.0.7.0/24 via 10.0.0.13",
        "11.15.159.0/24 via 10.0.0.12",
        "10.1.0.0/24 via 10.0.0.12,10.0.0.13",
        "blackhole 10.2.0.0/24",
        "fd00:1::/64 via fd00::12,fd00::13",
        "fd00:3::/64 via fd00::12",
    ] {
        assert!(ours.iter().any(|r| r == expected), "{expected} missing");
    }
    assert!(!ours.iter().any(|r| r.starts_with("11.0.8.0/24")));

    // Everything away again, deletes of routes that are gone included.
    let deletes: Vec<Change> = changes
        .iter()
        .map(|c| Change::Delete(c.prefix()))
        .filter(|d| d.prefix() != net("10.6.0.1/24"))
        .collect();
    ns.run(|kernel| async move {
        let errors: Vec<String> = kernel
            .apply(&deletes)
            .iter()
            .flatten()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(kernel.list().await.expect("list"), []);
    });
    assert_eq!(ns.ours(), Vec::<String>::new());
    assert_eq!(
        ns.routes("route show 10.9.0.0/24"),
        ["10.9.0.0/24 via 10.0.0.12"]
    );
}
