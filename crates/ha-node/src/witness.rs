//! The witness probe: one ICMP echo (raw socket, `CAP_NET_RAW`), answered within the timeout
//! by the witness itself with our identifier and sequence number, or not.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in b.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn echo_request(v6: bool, id: u16, seq: u16, nonce: &[u8; 16]) -> Vec<u8> {
    let mut p = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    // A random nonce the reply must echo: identifier and sequence alone are guessable, and a
    // forged answer would keep a cut-off unit holding the address.
    p.extend_from_slice(nonce);
    if !v6 {
        // The kernel computes ICMPv6 checksums itself; ICMPv4 is ours to fill in.
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// Whether `witness` answers an echo within `timeout`.
pub async fn probe(witness: IpAddr, id: u16, seq: u16, timeout: Duration) -> bool {
    match probe_inner(witness, id, seq, timeout).await {
        Ok(answered) => answered,
        Err(e) => {
            tracing::debug!(event = "ha.witness_error", error = %e);
            false
        }
    }
}

async fn probe_inner(
    witness: IpAddr,
    id: u16,
    seq: u16,
    timeout: Duration,
) -> std::io::Result<bool> {
    let v6 = witness.is_ipv6();
    let (domain, proto) = if v6 {
        (Domain::IPV6, Protocol::ICMPV6)
    } else {
        (Domain::IPV4, Protocol::ICMPV4)
    };
    let mut nonce = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| std::io::Error::other("no randomness"))?;
    let s = Socket::new(domain, Type::RAW, Some(proto))?;
    s.set_nonblocking(true)?;
    let sock = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(s))?;
    sock.send_to(
        &echo_request(v6, id, seq, &nonce),
        SocketAddr::new(witness, 0),
    )
    .await?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let got = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await;
        let Ok(got) = got else { return Ok(false) };
        let (n, from) = got?;
        if from.ip() != witness {
            continue;
        }
        // A raw IPv4 socket hands us the IP header too.
        let icmp = if v6 {
            &buf[..n]
        } else {
            let ihl = usize::from(buf[0] & 0x0f) * 4;
            if n < ihl + 8 {
                continue;
            }
            &buf[ihl..n]
        };
        let reply_type = if v6 { 129 } else { 0 };
        if icmp.len() >= 24
            && icmp[0] == reply_type
            && icmp[4..6] == id.to_be_bytes()
            && icmp[6..8] == seq.to_be_bytes()
            && icmp[8..24] == nonce
        {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_checksum_verifies() {
        let p = echo_request(false, 0x1234, 7, &[9; 16]);
        assert_eq!(checksum(&p), 0);
        assert_eq!(echo_request(true, 1, 2, &[9; 16])[0], 128);
    }
}
