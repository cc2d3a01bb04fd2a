//! Where to dial the other validators: `persistent_peers` in `config.toml` (CometBFT's name).
//!
//! Addresses are each node's own configuration, not the genesis's: a validator that moves to a
//! new IP changes one line in the other validators' configs, and the chain's genesis (and so
//! its signing domain) stays what it is.

use super::home::listen_matches;
use super::{Genesis, VALIDATOR_FILE};
use anyhow::{Result, anyhow, bail};
use consensus::{PublicKey, ValidatorIndex, ValidatorSet};
use network::ValidatorPeer;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// Largest `persistent_peers` list accepted, in entries (the validator-set cap).
pub const MAX_PEERS: usize = 256;

/// One validator's dial address: `<public key, 64 hex characters>@<ip>:<port>` (an IPv6
/// address in brackets). Host names are not accepted: the address is compared with the
/// remote address of the validator's connections, so it must be the IP it uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerAddress {
    /// The validator's consensus public key.
    pub public_key: PublicKey,
    /// UDP address of its QUIC listener.
    pub addr: SocketAddr,
}

impl fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", hex::encode(self.public_key.0), self.addr)
    }
}

impl FromStr for PeerAddress {
    type Err = String;

    /// Parse `<hex key>@<ip>:<port>`; the error says which half is wrong and why.
    fn from_str(s: &str) -> Result<Self, String> {
        let (key, addr) = s
            .split_once('@')
            .ok_or_else(|| format!("{s:?}: expected <public key hex>@<ip>:<port>"))?;
        let bytes = hex::decode(key)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| format!("{s:?}: the public key must be 64 hex characters (32 bytes)"))?;
        let addr = addr.parse::<SocketAddr>().map_err(|_| {
            format!("{s:?}: {addr:?} is not an IP address and port (host names are not accepted)")
        })?;
        if addr.port() == 0 || addr.ip().is_unspecified() {
            return Err(format!(
                "{s:?}: {addr} cannot be dialled (unspecified IP or port 0)"
            ));
        }
        Ok(PeerAddress {
            public_key: PublicKey(bytes),
            addr,
        })
    }
}

impl Serialize for PeerAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PeerAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Check a `persistent_peers` list on its own: at most [`MAX_PEERS`] entries, no public key
/// twice, no address given to two keys. Errors name both entries.
pub fn check_list(peers: &[PeerAddress]) -> Result<()> {
    if peers.len() > MAX_PEERS {
        bail!(
            "field `persistent_peers`: {} entries, at most {MAX_PEERS}",
            peers.len()
        );
    }
    let mut by_key = HashMap::with_capacity(peers.len());
    let mut by_addr = HashMap::with_capacity(peers.len());
    for p in peers {
        if let Some(q) = by_key.insert(p.public_key, p) {
            bail!("field `persistent_peers`: {q} and {p} name the same public key");
        }
        if let Some(q) = by_addr.insert(p.addr, p) {
            bail!("field `persistent_peers`: {q} and {p} have the same address");
        }
    }
    Ok(())
}

/// The network layer's view of the validator set: every validator of `vs` with the address
/// to dial it at. Ours is `listen`; every other validator's comes from `peers`.
///
/// Errors: a validator with no entry in `peers` (all such are named, with the fix); an entry
/// whose key is not a validator of `genesis`; an entry with our own key whose address does not
/// match `listen` ([`listen_matches`]: the others would dial an address we do not listen on).
pub fn dial_list(
    genesis: &Genesis,
    vs: &ValidatorSet,
    us: ValidatorIndex,
    listen: SocketAddr,
    peers: &[PeerAddress],
) -> Result<Vec<ValidatorPeer>> {
    check_list(peers)?;
    let by_key: HashMap<PublicKey, SocketAddr> =
        peers.iter().map(|p| (p.public_key, p.addr)).collect();
    if let Some(stranger) = peers.iter().find(|p| vs.index_of(&p.public_key).is_none()) {
        bail!(
            "field `persistent_peers`: {stranger}: this public key is not a validator of chain \
             {:?} (genesis)",
            genesis.chain_id
        );
    }
    let mut list = Vec::with_capacity(vs.len());
    let mut missing = Vec::new();
    for i in vs.indices() {
        let pk = *vs
            .public_key(i)
            .ok_or_else(|| anyhow!("validator {} has no public key", i.0))?;
        let addr = if i == us {
            if let Some(&a) = by_key.get(&pk)
                && !listen_matches(listen, a)
            {
                bail!(
                    "field `persistent_peers`: our own entry says the others dial us at {a}, \
                     but `p2p_listen` is {listen}; listen on that port (an unspecified IP such \
                     as 0.0.0.0 matches any address) or correct the entry"
                );
            }
            listen
        } else if let Some(&a) = by_key.get(&pk) {
            a
        } else {
            missing.push(format!("validator {} ({})", i.0, hex::encode(pk.0)));
            continue;
        };
        list.push(ValidatorPeer {
            index: i.0,
            public_key: pk.0,
            addr,
        });
    }
    if !missing.is_empty() {
        bail!(
            "field `persistent_peers`: no address for {}; add \"<public key>@<ip>:<port>\" for \
             each (its {VALIDATOR_FILE} has it; `bftnode config set-peers` writes the list)",
            missing.join(", ")
        );
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0101010101010101010101010101010101010101010101010101010101010101";

    #[test]
    fn peer_addresses_parse_and_print_back() {
        for s in [
            format!("{KEY}@127.0.0.1:26600"),
            format!("{KEY}@[::1]:26600"),
        ] {
            let p: PeerAddress = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
            assert_eq!(p.public_key, PublicKey([1; 32]));
        }
    }

    #[test]
    fn malformed_peer_addresses_say_what_is_wrong() {
        for (s, why) in [
            ("127.0.0.1:26600".to_string(), "expected <public key hex>"),
            (format!("{}@127.0.0.1:1", &KEY[2..]), "64 hex characters"),
            (format!("{KEY}@node1.example:26600"), "host names"),
            (format!("{KEY}@127.0.0.1"), "not an IP address and port"),
            (format!("{KEY}@0.0.0.0:26600"), "cannot be dialled"),
            (format!("{KEY}@127.0.0.1:0"), "cannot be dialled"),
        ] {
            let e = s.parse::<PeerAddress>().unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn a_list_refuses_a_key_or_an_address_twice() {
        let p = |k: u8, port: u16| PeerAddress {
            public_key: PublicKey([k; 32]),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        check_list(&[p(1, 1), p(2, 2)]).unwrap();
        let e = check_list(&[p(1, 1), p(1, 2)]).unwrap_err().to_string();
        assert!(e.contains("same public key"), "{e}");
        let e = check_list(&[p(1, 1), p(2, 1)]).unwrap_err().to_string();
        assert!(e.contains("same address"), "{e}");
    }
}
