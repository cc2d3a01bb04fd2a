//! Separate hosts on one machine: one Linux network namespace per validator, joined by a
//! bridge in a "switch" namespace (issue 11 item 2). Needs root and `ip` (iproute2).
//!
//! Layout for prefix `P` and `n` validators:
//!
//! ```text
//! P-sw        the switch: bridge `br0` with the relay's addresses 10.77.1.(i+1)/16
//! P-0 … P-n-1 validator i: `eth0` = 10.77.0.(i+1)/16, veth to `v<i>` on br0; `lo` up
//! ```
//!
//! Everything lives inside namespaces this module created; the root namespace is not touched.
//! [`Namespaces`] deletes them (and so their interfaces) when dropped.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

/// Largest number of validator namespaces (addresses 10.77.0.1 … 10.77.0.250).
pub const MAX_NODES: usize = 250;

/// Join the network namespace `name` (as `ip netns add` makes it: `/run/netns/<name>`) on the
/// calling thread only. Sockets the thread creates afterwards live in that namespace.
pub fn enter(name: &str) -> io::Result<()> {
    let f = std::fs::File::open(format!("/run/netns/{name}"))?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}

/// Run `ip ARGS`; an error carries the command and its stderr.
fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The namespaces of one network; deleted on drop.
#[derive(Debug)]
pub struct Namespaces {
    prefix: String,
    n: usize,
}

impl Namespaces {
    /// Create the switch and `n` validator namespaces (see the module doc). On an error,
    /// whatever was created is deleted again. `prefix` must be short (interface and namespace
    /// names), e.g. `bft1234`.
    pub fn create(prefix: &str, n: usize) -> io::Result<Namespaces> {
        if n == 0 || n > MAX_NODES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{n} namespaces: 1..={MAX_NODES}"),
            ));
        }
        let mut me = Namespaces {
            prefix: prefix.to_string(),
            n: 0,
        };
        let sw = me.switch();
        // Leftovers of a crashed run with the same prefix.
        me.n = n;
        me.delete();
        me.n = 0;
        ip(&["netns", "add", &sw])?;
        ip(&["-n", &sw, "link", "set", "lo", "up"])?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for i in 0..n {
            me.n = i + 1;
            let ns = me.node(i);
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            let peer = format!("v{i}");
            ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &peer, "netns",
                &sw,
            ])?;
            ip(&["-n", &sw, "link", "set", &peer, "master", "br0"])?;
            ip(&["-n", &sw, "link", "set", &peer, "up"])?;
            let addr = format!("{}/16", Self::node_ip(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            let relay = format!("{}/16", Self::relay_ip(i));
            ip(&["-n", &sw, "addr", "add", &relay, "dev", "br0"])?;
        }
        Ok(me)
    }

    /// Name of the switch namespace.
    pub fn switch(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    /// Name of validator `i`'s namespace.
    pub fn node(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    /// Validator `i`'s own address (its `eth0`).
    pub fn node_ip(i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 77, 0, (i + 1) as u8))
    }

    /// The relay's address for validator `i` (on the switch's bridge).
    pub fn relay_ip(i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 77, 1, (i + 1) as u8))
    }

    /// `program args…` to run inside validator `i`'s namespace (`ip netns exec`, which execs
    /// the program: the child's pid is the program's).
    pub fn command(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.node(i), program]);
        c
    }

    fn delete(&self) {
        for i in 0..self.n {
            let _ = ip(&["netns", "del", &self.node(i)]);
        }
        let _ = ip(&["netns", "del", &self.switch()]);
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.delete();
    }
}
