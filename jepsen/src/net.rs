//! The network: one namespace per member and a hub namespace holding the bridge, the firewall
//! and the harness itself.
//!
//! ```text
//!   hub namespace  sj<id>h: br0 198.18.0.254/24, nft `table bridge jepsen`, the harness + clients
//!        │ veth v1 … vN (bridge ports)
//!   sj<id>n1 … sj<id>nN: eth0 198.18.0.i/24, one `steward` each (HTTP :4440, gRPC :4441)
//! ```
//!
//! The harness runs *inside* the hub namespace (it enters it before it starts any thread), not
//! in the host's namespace on a bridge: no packet of a run touches the host's network, routing
//! or ruleset (`nft list tables` on the host stays empty), two runs on one machine cannot see
//! each other, and the only route the harness has is the run's /24. 198.18.0.0/24 is from the
//! benchmarking range (RFC 2544), which no real network here uses.
//!
//! Faults between members are applied where they meet: the bridge's `forward` hook sees every
//! member-to-member packet and nothing else, so clients in the hub still reach every member,
//! as in Jepsen (minority members stay observable, stale reads can be seen). A partition is a
//! set of (source, destination) pairs dropped; packet loss is a second set whose packets are
//! dropped with probability p (`numgen random mod 100 < p`). Healing flushes the sets.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use crate::sys::{self, Resource, Resources, SysError, IP, NFT};

/// The run's subnet: members are .1 … .N, the hub (harness) is .254.
pub const SUBNET: [u8; 3] = [198, 18, 0];
pub const HUB_HOST: u8 = 254;
pub const HTTP_PORT: u16 = 4440;
pub const RAFT_PORT: u16 = 4441;

/// One member host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// `n1`, `n2`, …
    pub name: String,
    /// Its namespace.
    pub ns: String,
    pub ip: Ipv4Addr,
}

impl Host {
    pub fn http_addr(&self) -> String {
        format!("{}:{HTTP_PORT}", self.ip)
    }
    pub fn raft_addr(&self) -> String {
        format!("{}:{RAFT_PORT}", self.ip)
    }
    pub fn url(&self) -> String {
        format!("http://{}", self.http_addr())
    }
}

/// The run's namespaces.
pub struct Net {
    pub hub: String,
    pub hosts: Vec<Host>,
}

const TABLE: &str = "jepsen";

impl Net {
    /// Creates the hub, the bridge, `n` member namespaces with their veth pairs, and the
    /// firewall. Every namespace is registered in `res` before it is created.
    pub fn create(run_id: &str, n: usize, res: &Resources) -> Result<Net, SysError> {
        let hub = format!("sj{run_id}h");
        let ip = |args: &[&str]| sys::run(IP.name, args).map(|_| ());
        res.add(Resource::Netns(hub.clone()));
        ip(&["netns", "add", &hub])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        let hub_ip = format!("{}.{}.{}.{HUB_HOST}/24", SUBNET[0], SUBNET[1], SUBNET[2]);
        ip(&["-n", &hub, "addr", "add", &hub_ip, "dev", "br0"])?;
        let mut hosts = Vec::new();
        for i in 1..=n {
            sys::check_interrupt()?;
            let ns = format!("sj{run_id}n{i}");
            res.add(Resource::Netns(ns.clone()));
            ip(&["netns", "add", &ns])?;
            // Created directly in the two namespaces (never in the host's), under a name unique
            // to the run, then renamed to eth0 inside the member's namespace.
            let tmp = format!("sj{run_id}e{i}");
            let port = format!("v{i}");
            ip(&["link", "add", &tmp, "netns", &ns, "type", "veth", "peer", "name", &port, "netns", &hub])?;
            ip(&["-n", &ns, "link", "set", &tmp, "name", "eth0"])?;
            let addr = Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], i as u8);
            ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &hub, "link", "set", &port, "up"])?;
            hosts.push(Host { name: format!("n{i}"), ns, ip: addr });
        }
        let net = Net { hub, hosts };
        net.nft(&format!(
            "table bridge {TABLE} {{\n\
               set grudge {{ type ipv4_addr . ipv4_addr; }}\n\
               set lossy {{ type ipv4_addr . ipv4_addr; }}\n\
               chain forward {{ type filter hook forward priority 0; policy accept;\n\
                 ip saddr . ip daddr @grudge drop\n\
                 jump loss\n\
               }}\n\
               chain loss {{ }}\n\
             }}\n"
        ))?;
        Ok(net)
    }

    /// Runs an nft script in the hub namespace.
    fn nft(&self, script: &str) -> Result<(), SysError> {
        sys::run_input(IP.name, &["netns", "exec", &self.hub, NFT.name, "-f", "-"], Some(script)).map(|_| ())
    }

    /// Moves the calling thread into the hub namespace. Called on the main thread before any
    /// other thread exists, so every thread of the harness (and every socket) lives there.
    pub fn enter_hub(&self) -> std::io::Result<()> {
        let f = File::open(format!("/run/netns/{}", self.hub))?;
        // SAFETY: setns on a namespace fd we just opened; affects only this thread.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn pairs_elements(&self, pairs: &[(usize, usize)]) -> String {
        pairs
            .iter()
            .map(|&(a, b)| format!("{} . {}", self.hosts[a].ip, self.hosts[b].ip))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Drops every packet from `a` to `b` for each `(a, b)`: a grudge (replaces the previous one).
    pub fn partition(&self, pairs: &[(usize, usize)]) -> Result<(), SysError> {
        let mut script = format!("flush set bridge {TABLE} grudge\n");
        if !pairs.is_empty() {
            script.push_str(&format!("add element bridge {TABLE} grudge {{ {} }}\n", self.pairs_elements(pairs)));
        }
        self.nft(&script)
    }

    /// Drops each packet from `a` to `b` with probability `percent`% (replaces the previous loss).
    pub fn loss(&self, pairs: &[(usize, usize)], percent: u32) -> Result<(), SysError> {
        let mut script = format!("flush set bridge {TABLE} lossy\nflush chain bridge {TABLE} loss\n");
        if !pairs.is_empty() {
            script.push_str(&format!("add element bridge {TABLE} lossy {{ {} }}\n", self.pairs_elements(pairs)));
            script.push_str(&format!(
                "add rule bridge {TABLE} loss ip saddr . ip daddr @lossy numgen random mod 100 < {percent} drop\n"
            ));
        }
        self.nft(&script)
    }

    /// Removes every network fault.
    pub fn heal(&self) -> Result<(), SysError> {
        self.nft(&format!(
            "flush set bridge {TABLE} grudge\nflush set bridge {TABLE} lossy\nflush chain bridge {TABLE} loss\n"
        ))
    }

    /// The firewall as nft prints it (for the run folder).
    pub fn ruleset(&self) -> String {
        sys::run(IP.name, &["netns", "exec", &self.hub, NFT.name, "list", "ruleset"]).unwrap_or_else(|e| e.to_string())
    }
}

/// A grudge: for every node, the nodes whose packets it drops. Built as (from, to) pairs.
pub mod grudge {
    /// Cuts `a` and `b` apart in both directions.
    pub fn between(a: &[usize], b: &[usize]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for &x in a {
            for &y in b {
                out.push((x, y));
                out.push((y, x));
            }
        }
        out
    }

    /// Complete partition into components: nobody talks across components.
    pub fn components(parts: &[Vec<usize>]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (i, a) in parts.iter().enumerate() {
            for b in parts.iter().skip(i + 1) {
                out.extend(between(a, b));
            }
        }
        out
    }

    /// Jepsen's bridge: two halves that do not talk, and one node of the second half (the
    /// bridge) that talks to both. `order` is a shuffled node list.
    pub fn bridge(order: &[usize]) -> Vec<(usize, usize)> {
        let (a, b) = order.split_at(order.len() / 2);
        let (_bridge, rest) = b.split_first().expect("at least one node in the second half");
        between(a, rest)
    }

    /// Jepsen's majorities ring: every node sees a majority (itself and its neighbours in a
    /// shuffled ring), and no two nodes see the same majority. A node drops packets from
    /// every node outside its view, so the grudge may be one-way between two nodes.
    pub fn majorities_ring(order: &[usize]) -> Vec<(usize, usize)> {
        let n = order.len();
        let m = n / 2 + 1;
        let mut out = Vec::new();
        for (pos, &node) in order.iter().enumerate() {
            // The view is a window of m ring positions centred on the node.
            let start = pos + n - (m - 1) / 2;
            let view: Vec<usize> = (0..m).map(|k| order[(start + k) % n]).collect();
            for &other in order {
                if !view.contains(&other) {
                    out.push((other, node));
                }
            }
        }
        out
    }

    /// Everything from `from` to every other node in `all` is dropped (one way only).
    pub fn one_way(from: usize, all: &[usize]) -> Vec<(usize, usize)> {
        all.iter().filter(|&&x| x != from).map(|&x| (from, x)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::grudge::*;
    use std::collections::HashSet;

    #[test]
    fn the_bridge_node_talks_to_both_sides() {
        let g: HashSet<_> = bridge(&[0, 1, 2, 3, 4]).into_iter().collect();
        // halves {0,1} and {2,3,4}; 2 is the bridge.
        assert!(g.contains(&(0, 3)) && g.contains(&(4, 1)));
        assert!(!g.iter().any(|&(a, b)| a == 2 || b == 2));
        assert!(!g.contains(&(0, 1)) && !g.contains(&(3, 4)));
    }

    #[test]
    fn in_a_majorities_ring_each_node_hears_a_distinct_majority() {
        let order = [3, 0, 4, 1, 2];
        let g: HashSet<_> = majorities_ring(&order).into_iter().collect();
        let mut views = HashSet::new();
        for &node in &order {
            let view: Vec<usize> = (0..5).filter(|&o| !g.contains(&(o, node))).collect();
            assert_eq!(view.len(), 3, "node {node} hears a majority: {view:?}");
            assert!(view.contains(&node));
            assert!(views.insert(view), "views differ");
        }
    }

    #[test]
    fn components_cut_every_pair_across() {
        let g = components(&[vec![0], vec![1, 2]]);
        assert_eq!(g.len(), 4);
        assert_eq!(one_way(1, &[0, 1, 2]), vec![(1, 0), (1, 2)]);
    }
}
