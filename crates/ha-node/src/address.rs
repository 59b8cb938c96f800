//! The floating address through rtnetlink (RTM_NEWADDR / RTM_DELADDR), never by running `ip`.

use std::net::IpAddr;

use futures_util::TryStreamExt;
use rtnetlink::Handle;
use rtnetlink::packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use rtnetlink::packet_route::link::LinkAttribute;

#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("interface {0} not found")]
    NoInterface(String),
    #[error("netlink: {0}")]
    Netlink(String),
}

/// The interface the address goes on: its index and hardware address.
#[derive(Debug, Clone)]
pub struct Link {
    pub index: u32,
    pub mac: Option<[u8; 6]>,
}

pub struct Addresses {
    handle: Handle,
    interface: String,
    vip: IpAddr,
    prefix_len: u8,
}

fn nl(e: rtnetlink::Error) -> AddressError {
    AddressError::Netlink(e.to_string())
}

impl Addresses {
    /// Opens a netlink connection (its task runs on the current runtime).
    pub fn new(interface: &str, vip: IpAddr, prefix_len: u8) -> std::io::Result<Addresses> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Addresses {
            handle,
            interface: interface.to_string(),
            vip,
            prefix_len,
        })
    }

    pub async fn link(&self) -> Result<Link, AddressError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(self.interface.clone())
            .execute();
        let link = match links.try_next().await {
            Ok(Some(l)) => l,
            Ok(None) => return Err(AddressError::NoInterface(self.interface.clone())),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc_enodev() => {
                return Err(AddressError::NoInterface(self.interface.clone()));
            }
            Err(e) => return Err(nl(e)),
        };
        let mac = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(b) if b.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(b);
                Some(m)
            }
            _ => None,
        });
        Ok(Link {
            index: link.header.index,
            mac,
        })
    }

    /// The interface's address messages that carry the floating address.
    async fn ours(&self, index: u32) -> Result<Vec<AddressMessage>, AddressError> {
        let mut found = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut ours = Vec::new();
        while let Some(msg) = found.try_next().await.map_err(nl)? {
            let here = msg.attributes.iter().any(|a| {
                matches!(a, AddressAttribute::Address(ip) | AddressAttribute::Local(ip) if *ip == self.vip)
            });
            if here {
                ours.push(msg);
            }
        }
        Ok(ours)
    }

    /// Whether the address is on the interface now.
    pub async fn present(&self) -> Result<bool, AddressError> {
        let link = self.link().await?;
        Ok(!self.ours(link.index).await?.is_empty())
    }

    /// Adds the address (a no-op when it is already there). An IPv6 address skips duplicate
    /// address detection: it is ours by the pair's decision, and must serve at once.
    pub async fn add(&self) -> Result<Link, AddressError> {
        let link = self.link().await?;
        let mut req = self
            .handle
            .address()
            .add(link.index, self.vip, self.prefix_len)
            .replace();
        if self.vip.is_ipv6() {
            req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        }
        req.execute().await.map_err(nl)?;
        Ok(link)
    }

    /// Removes the address if present (absent is not an error).
    pub async fn remove(&self) -> Result<(), AddressError> {
        let link = match self.link().await {
            Ok(l) => l,
            // No interface: no address on it either.
            Err(AddressError::NoInterface(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let ours = self.ours(link.index).await?;
        for msg in ours {
            self.handle.address().del(msg).execute().await.map_err(nl)?;
        }
        Ok(())
    }
}

fn libc_enodev() -> i32 {
    nix::errno::Errno::ENODEV as i32
}
