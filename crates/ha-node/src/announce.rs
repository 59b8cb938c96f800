//! Telling the LAN that the floating address moved: gratuitous ARP (IPv4, request and reply
//! forms, broadcast) from an `AF_PACKET` socket, unsolicited neighbour advertisement (IPv6,
//! override flag, to all nodes, hop limit 255) from a raw ICMPv6 socket. Both need
//! `CAP_NET_RAW`, the `palisade ha` process's second capability.

// `AF_PACKET` needs a `sockaddr_ll`, which neither std nor socket2 builds safely: the one
// unsafe block fills it and passes it to `sendto`, with its true size.
#![allow(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use nix::libc;

const ETH_P_ARP: u16 = 0x0806;

/// The 28-byte ARP payload announcing `ip` at `mac` (`op` 1 = request, 2 = reply).
pub fn arp_payload(op: u16, mac: [u8; 6], ip: Ipv4Addr) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&op.to_be_bytes());
    p[8..14].copy_from_slice(&mac);
    p[14..18].copy_from_slice(&ip.octets());
    // Target hardware address: zero in the request form, ours in the reply form.
    if op == 2 {
        p[18..24].copy_from_slice(&mac);
    }
    p[24..28].copy_from_slice(&ip.octets());
    p
}

/// Sends the gratuitous ARP request and reply for `ip` on interface `ifindex`.
pub fn gratuitous_arp(ifindex: u32, mac: [u8; 6], ip: Ipv4Addr) -> std::io::Result<()> {
    // SAFETY: a plain socket(2) call; the descriptor is owned right after.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_ARP.to_be()),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ETH_P_ARP.to_be();
    to.sll_ifindex = ifindex as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    for op in [1u16, 2] {
        let p = arp_payload(op, mac, ip);
        // SAFETY: `p` and `to` live across the call; the lengths given are theirs.
        let n = unsafe {
            libc::sendto(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                p.as_ptr().cast(),
                p.len(),
                0,
                (&to as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The ICMPv6 neighbour advertisement for `target` at `mac`: override set, solicited clear,
/// with the target link-layer address option. The kernel fills in the checksum.
pub fn na_payload(target: Ipv6Addr, mac: [u8; 6]) -> [u8; 32] {
    let mut p = [0u8; 32];
    p[0] = 136;
    p[4] = 0x20; // override
    p[8..24].copy_from_slice(&target.octets());
    p[24] = 2; // target link-layer address
    p[25] = 1; // 8 octets
    p[26..32].copy_from_slice(&mac);
    p
}

pub fn unsolicited_na(ifindex: u32, mac: [u8; 6], target: Ipv6Addr) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    s.set_multicast_hops_v6(255)?;
    s.set_unicast_hops_v6(255)?;
    s.set_multicast_if_v6(ifindex)?;
    let all_nodes = SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, ifindex);
    s.send_to(&na_payload(target, mac), &SocketAddr::V6(all_nodes).into())?;
    Ok(())
}

pub fn announce(ifindex: u32, mac: Option<[u8; 6]>, ip: IpAddr) -> std::io::Result<()> {
    // An interface without a hardware address (a tunnel) has no neighbours to tell.
    let Some(mac) = mac else { return Ok(()) };
    match ip {
        IpAddr::V4(v4) => gratuitous_arp(ifindex, mac, v4),
        IpAddr::V6(v6) => unsolicited_na(ifindex, mac, v6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_payload_layout() {
        let mac = [2, 0, 0, 0, 0, 1];
        let ip = Ipv4Addr::new(192, 0, 2, 10);
        let req = arp_payload(1, mac, ip);
        assert_eq!(&req[..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&req[8..14], &mac);
        assert_eq!(&req[14..18], &[192, 0, 2, 10]);
        assert_eq!(&req[18..24], &[0; 6]);
        assert_eq!(&req[24..28], &[192, 0, 2, 10]);
        let rep = arp_payload(2, mac, ip);
        assert_eq!(&rep[6..8], &[0, 2]);
        assert_eq!(&rep[18..24], &mac);
    }

    #[test]
    fn na_payload_layout() {
        let p = na_payload("2001:db8::10".parse().unwrap(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(p[0], 136);
        assert_eq!(p[4], 0x20);
        assert_eq!(&p[24..26], &[2, 1]);
    }
}
