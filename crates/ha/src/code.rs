//! The pairing code: everything the second unit needs to join, shown once on the first. It
//! carries the pair key, so it is secret. `PAL1-` then base32 (RFC 4648 alphabet, no padding)
//! in groups of four, of: version 1, the pair key (32 bytes), the floating address (4 or 16
//! bytes after a family byte), its prefix length, the heartbeat port, the creator's interface
//! name (length byte + bytes), then 4 check bytes (the start of SHA-256 of the rest) so that a
//! mistyped code is refused rather than read as another key.

use std::net::IpAddr;

const PREFIX: &str = "PAL1-";
const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingCode {
    pub key: [u8; 32],
    pub vip: IpAddr,
    pub prefix_len: u8,
    pub port: u16,
    pub interface: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeError {
    NotACode,
    Checksum,
    Malformed(&'static str),
}

impl std::fmt::Display for CodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodeError::NotACode => f.write_str("not a Palisade pairing code (they start PAL1-)"),
            CodeError::Checksum => {
                f.write_str("the pairing code is mistyped (its check digits do not match)")
            }
            CodeError::Malformed(what) => write!(f, "the pairing code is malformed: {what}"),
        }
    }
}

impl std::error::Error for CodeError {}

impl PairingCode {
    pub fn encode(&self) -> String {
        let mut b = vec![VERSION];
        b.extend_from_slice(&self.key);
        match self.vip {
            IpAddr::V4(a) => {
                b.push(4);
                b.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                b.push(6);
                b.extend_from_slice(&a.octets());
            }
        }
        b.push(self.prefix_len);
        b.extend_from_slice(&self.port.to_be_bytes());
        let name = self.interface.as_bytes();
        b.push(name.len().min(255) as u8);
        b.extend_from_slice(&name[..name.len().min(255)]);
        let check = ring::digest::digest(&ring::digest::SHA256, &b);
        b.extend_from_slice(&check.as_ref()[..4]);
        let text = data_encoding::BASE32_NOPAD.encode(&b);
        let groups: Vec<&str> = text
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect();
        format!("{PREFIX}{}", groups.join("-"))
    }

    pub fn decode(text: &str) -> Result<PairingCode, CodeError> {
        let t = text.trim();
        let rest = t
            .get(..PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(PREFIX))
            .map(|_| &t[PREFIX.len()..])
            .ok_or(CodeError::NotACode)?;
        let cleaned: String = rest
            .chars()
            .filter(|c| !matches!(c, '-' | ' '))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if cleaned.len() > 200 {
            return Err(CodeError::Malformed("too long"));
        }
        let b = data_encoding::BASE32_NOPAD
            .decode(cleaned.as_bytes())
            .map_err(|_| CodeError::Malformed("not base32"))?;
        if b.len() < 4 {
            return Err(CodeError::Malformed("too short"));
        }
        let (body, check) = b.split_at(b.len() - 4);
        if &ring::digest::digest(&ring::digest::SHA256, body).as_ref()[..4] != check {
            return Err(CodeError::Checksum);
        }
        let mut r = Reader(body);
        if r.take(1)?[0] != VERSION {
            return Err(CodeError::Malformed("unknown version"));
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(r.take(32)?);
        let vip = match r.take(1)?[0] {
            4 => {
                let o: [u8; 4] = r
                    .take(4)?
                    .try_into()
                    .map_err(|_| CodeError::Malformed("address"))?;
                IpAddr::from(o)
            }
            6 => {
                let o: [u8; 16] = r
                    .take(16)?
                    .try_into()
                    .map_err(|_| CodeError::Malformed("address"))?;
                IpAddr::from(o)
            }
            _ => return Err(CodeError::Malformed("address family")),
        };
        let prefix_len = r.take(1)?[0];
        if prefix_len > if vip.is_ipv4() { 32 } else { 128 } {
            return Err(CodeError::Malformed("prefix length"));
        }
        let p = r.take(2)?;
        let port = u16::from_be_bytes([p[0], p[1]]);
        let n = r.take(1)?[0] as usize;
        let interface = std::str::from_utf8(r.take(n)?)
            .map_err(|_| CodeError::Malformed("interface name"))?
            .to_string();
        if !r.0.is_empty() {
            return Err(CodeError::Malformed("trailing bytes"));
        }
        Ok(PairingCode {
            key,
            vip,
            prefix_len,
            port,
            interface,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodeError> {
        if self.0.len() < n {
            return Err(CodeError::Malformed("too short"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code() -> PairingCode {
        PairingCode {
            key: [7; 32],
            vip: "192.0.2.10".parse().unwrap(),
            prefix_len: 24,
            port: 7246,
            interface: "lan0".into(),
        }
    }

    #[test]
    fn round_trip_v4_v6_any_case_and_spacing() {
        let text = code().encode();
        assert!(text.starts_with("PAL1-"));
        assert_eq!(PairingCode::decode(&text), Ok(code()));
        let sloppy = format!("  {} ", text.to_lowercase().replace('-', " "));
        let sloppy = sloppy.replacen("pal1 ", "pal1-", 1);
        assert_eq!(PairingCode::decode(&sloppy), Ok(code()));
        let v6 = PairingCode {
            vip: "2001:db8::10".parse().unwrap(),
            prefix_len: 64,
            ..code()
        };
        assert_eq!(PairingCode::decode(&v6.encode()), Ok(v6));
    }

    #[test]
    fn a_mistyped_code_is_refused() {
        let text = code().encode();
        let pos = 10;
        let c = text.as_bytes()[pos];
        let typo = if c == b'A' { 'B' } else { 'A' };
        let mut bad = text.clone();
        bad.replace_range(pos..pos + 1, &typo.to_string());
        assert_eq!(PairingCode::decode(&bad), Err(CodeError::Checksum));
        assert_eq!(PairingCode::decode("hello"), Err(CodeError::NotACode));
        assert!(PairingCode::decode("PAL1-AAAA").is_err());
        assert!(PairingCode::decode(&text[..text.len() - 5]).is_err());
    }
}
