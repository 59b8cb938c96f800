//! DKIM signing keys of the organisation's domains: `DIR/keys/dkim/<domain>/<selector>.key`,
//! PEM, mode 0600, owned by the engine's user (who signs with them).
//!
//! - Ed25519 (RFC 8463): generated with ring, stored as PKCS#8 (`PRIVATE KEY`); the DNS
//!   record's `p=` is the raw 32-byte public key.
//! - RSA-2048 (`rsa-sha256`, what every receiver verifies): ring signs with RSA but does not
//!   generate RSA keys, so the key is generated here (two 1024-bit primes from the system's
//!   random generator, Miller-Rabin with 64 random bases, e = 65537) and stored as PKCS#1
//!   (`RSA PRIVATE KEY`); ring then validates the whole key before it is written. The DNS
//!   record's `p=` is the SubjectPublicKeyInfo, as `openssl rsa -pubout` and opendkim-genkey
//!   publish it.
//!
//! A key is never overwritten: a new key is a new selector (publish it, switch to it, then
//! remove the old record).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use num_bigint::BigUint;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair, RsaKeyPair};

use crate::data_dir::DataDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Rsa,
    Ed25519,
}

impl Algorithm {
    /// The `a=` tag's value.
    pub fn signing_name(self) -> &'static str {
        match self {
            Algorithm::Rsa => "rsa-sha256",
            Algorithm::Ed25519 => "ed25519-sha256",
        }
    }

    /// The DNS record's `k=`.
    pub fn key_type(self) -> &'static str {
        match self {
            Algorithm::Rsa => "rsa",
            Algorithm::Ed25519 => "ed25519",
        }
    }
}

impl std::str::FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "rsa" | "rsa-sha256" | "rsa2048" | "rsa-2048" => Ok(Algorithm::Rsa),
            "ed25519" | "ed25519-sha256" => Ok(Algorithm::Ed25519),
            other => Err(format!(
                "unknown DKIM key algorithm '{other}' (rsa or ed25519)"
            )),
        }
    }
}

/// A private key as read from its file.
#[derive(Clone)]
pub struct PrivateKey {
    pub algorithm: Algorithm,
    /// PKCS#1 DER (RSA) or PKCS#8 DER (Ed25519).
    pub der: Vec<u8>,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself, not even in a debug log.
        write!(f, "PrivateKey({:?})", self.algorithm)
    }
}

impl PrivateKey {
    /// Generates a new key.
    pub fn generate(algorithm: Algorithm) -> Result<PrivateKey, String> {
        let rng = SystemRandom::new();
        let der = match algorithm {
            Algorithm::Ed25519 => Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|e| format!("generating an Ed25519 key: {e}"))?
                .as_ref()
                .to_vec(),
            Algorithm::Rsa => rsa_2048(&rng)?,
        };
        Ok(PrivateKey { algorithm, der })
    }

    /// Reads a PEM key file (`PRIVATE KEY` with an Ed25519 key, or `RSA PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<PrivateKey, String> {
        let (label, der) = pem_decode(pem)?;
        let key = match label.as_str() {
            "RSA PRIVATE KEY" => PrivateKey {
                algorithm: Algorithm::Rsa,
                der,
            },
            "PRIVATE KEY" if Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).is_ok() => {
                PrivateKey {
                    algorithm: Algorithm::Ed25519,
                    der,
                }
            }
            "PRIVATE KEY" => {
                // An RSA key in PKCS#8 (as `openssl genpkey` writes it): kept as it is.
                RsaKeyPair::from_pkcs8(&der)
                    .map_err(|e| format!("neither an Ed25519 nor an RSA key: {e}"))?;
                return Ok(PrivateKey {
                    algorithm: Algorithm::Rsa,
                    der,
                });
            }
            other => return Err(format!("a PEM '{other}', not a private key")),
        };
        key.public_key()?;
        Ok(key)
    }

    /// The key as PEM, for its file.
    pub fn to_pem(&self) -> String {
        let label = match self.algorithm {
            Algorithm::Rsa if is_pkcs8(&self.der) => "PRIVATE KEY",
            Algorithm::Rsa => "RSA PRIVATE KEY",
            Algorithm::Ed25519 => "PRIVATE KEY",
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.der);
        let mut out = format!("-----BEGIN {label}-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
        out
    }

    /// The public key as the DNS record's `p=` wants it (see the module's doc).
    pub fn public_key(&self) -> Result<Vec<u8>, String> {
        match self.algorithm {
            Algorithm::Ed25519 => Ok(Ed25519KeyPair::from_pkcs8_maybe_unchecked(&self.der)
                .map_err(|e| format!("unusable Ed25519 key: {e}"))?
                .public_key()
                .as_ref()
                .to_vec()),
            Algorithm::Rsa => {
                let pair = if is_pkcs8(&self.der) {
                    RsaKeyPair::from_pkcs8(&self.der)
                } else {
                    RsaKeyPair::from_der(&self.der)
                }
                .map_err(|e| format!("unusable RSA key: {e}"))?;
                Ok(rsa_spki(pair.public().as_ref()))
            }
        }
    }

    /// The TXT record to publish at `<selector>._domainkey.<domain>`.
    pub fn dns_record(&self) -> Result<String, String> {
        Ok(format!(
            "v=DKIM1; k={}; p={}",
            self.algorithm.key_type(),
            base64::engine::general_purpose::STANDARD.encode(self.public_key()?)
        ))
    }

    /// Whether the DER is PKCS#8 (else PKCS#1 for RSA).
    pub fn is_pkcs8(&self) -> bool {
        self.algorithm == Algorithm::Ed25519 || is_pkcs8(&self.der)
    }
}

// PKCS#8 DER starts with SEQUENCE { INTEGER 0, SEQUENCE { OID ... } }; PKCS#1 with
// SEQUENCE { INTEGER 0, INTEGER n }: the third element's tag tells them apart.
fn is_pkcs8(der: &[u8]) -> bool {
    let mut i = 1;
    // SEQUENCE length
    let Some(&l) = der.get(i) else { return false };
    i += 1 + if l & 0x80 != 0 {
        (l & 0x7f) as usize
    } else {
        0
    };
    // INTEGER 0 or 1 (PKCS#8 v1, OneAsymmetricKey v2), then the next tag
    matches!(der.get(i..i + 3), Some([0x02, 0x01, 0x00 | 0x01])) && der.get(i + 3) == Some(&0x30)
}

/// Where the key of `selector` for `domain` lives.
pub fn key_path(data: &DataDir, domain: &str, selector: &str) -> PathBuf {
    data.keys()
        .join("dkim")
        .join(domain.trim_end_matches('.').to_ascii_lowercase())
        .join(format!("{}.key", selector.to_ascii_lowercase()))
}

/// Whether `s` is a usable selector: dot-separated labels of letters, digits and hyphens.
pub fn valid_selector(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Writes a new key file (0600; never over an existing one). Its directory is created
/// with the owner of `DIR/keys` (the engine's user) when it is missing, and so is the file.
pub fn write_new(
    data: &DataDir,
    domain: &str,
    selector: &str,
    key: &PrivateKey,
) -> Result<PathBuf, String> {
    check_names(domain, selector)?;
    let path = key_path(data, domain, selector);
    let keys = data.keys();
    let owner = fs::metadata(&keys).map_err(|e| format!("{}: {e}", keys.display()))?;
    let (uid, gid) = (owner.uid(), owner.gid());
    let mut dir = keys.clone();
    for part in ["dkim", &domain.trim_end_matches('.').to_ascii_lowercase()] {
        dir = dir.join(part);
        // Written as root into a directory the engine's user owns: a symbolic link there must
        // not send the key (and its chown) anywhere else.
        match fs::symlink_metadata(&dir) {
            Ok(m) if !m.is_dir() => {
                return Err(format!("{} is not a directory", dir.display()));
            }
            Ok(m) if m.uid() != uid => {
                return Err(format!("{} is not owned by the keys' owner", dir.display()));
            }
            _ => {}
        }
        if !dir.exists() {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            chown(&dir, uid, gid)?;
        }
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(O_NOFOLLOW)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => format!(
                "{} exists: a key is never replaced; choose a new selector",
                path.display()
            ),
            _ => format!("{}: {e}", path.display()),
        })?;
    let written = f
        .write_all(key.to_pem().as_bytes())
        .and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&path);
        return Err(format!("{}: {e}", path.display()));
    }
    if let Err(e) = chown(&path, uid, gid) {
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// The selector a new key gets when none is given: `pal<year><month>` and `r` (RSA) or `e`
/// (Ed25519), e.g. `pal202612r`, so that a rotation next month gets a new name by itself.
pub fn default_selector(algorithm: Algorithm, now_unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(now_unix)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let suffix = if algorithm == Algorithm::Rsa {
        "r"
    } else {
        "e"
    };
    format!("pal{}{:02}{suffix}", t.year(), u8::from(t.month()))
}

/// A key [`create`] made.
#[derive(Debug, Clone)]
pub struct Created {
    pub domain: String,
    pub selector: String,
    pub algorithm: Algorithm,
    pub path: PathBuf,
    /// The TXT record to publish at `<selector>._domainkey.<domain>`.
    pub record: String,
}

/// Makes a new key for `domain` (normalised: lower case, no final dot), writes it with
/// [`write_new`] and audits `dkim.key_generated`. Used by `palisade dkim generate` (as root)
/// and by the engine for the console (as the engine's user, who owns `DIR/keys`).
pub fn create(
    data: &DataDir,
    domain: &str,
    selector: Option<&str>,
    algorithm: Algorithm,
    actor: &str,
    source: &str,
) -> Result<Created, String> {
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let selector = match selector.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => s.to_ascii_lowercase(),
        None => default_selector(algorithm, crate::now_unix()),
    };
    check_names(&domain, &selector)?;
    let keys = data.keys();
    if !keys.exists() {
        return Err(format!(
            "{} does not exist: start Palisade once with this data directory first",
            keys.display()
        ));
    }
    if key_path(data, &domain, &selector).exists() {
        return Err(format!(
            "there is already a key {selector}._domainkey.{domain}: a key is never replaced; choose a new selector"
        ));
    }
    let key = PrivateKey::generate(algorithm)?;
    let record = key.dns_record()?;
    let path = write_new(data, &domain, &selector, &key)?;
    let mut audit = crate::AuditLog::open(&data.audit_db()).map_err(|e| e.to_string())?;
    audit
        .append(
            actor,
            source,
            "dkim.key_generated",
            &format!("{selector}._domainkey.{domain}"),
            &serde_json::json!({ "algorithm": algorithm.signing_name() }),
        )
        .map_err(|e| e.to_string())?;
    Ok(Created {
        domain,
        selector,
        algorithm,
        path,
        record,
    })
}

/// O_NOFOLLOW (Linux, every architecture Palisade runs on).
const O_NOFOLLOW: i32 = 0o400000;

/// A domain and selector that are safe as path components.
fn check_names(domain: &str, selector: &str) -> Result<(), String> {
    if !crate::config::is_valid_domain(domain.trim_end_matches('.')) {
        return Err(format!("'{domain}' is not a valid domain name"));
    }
    if !valid_selector(selector) {
        return Err(format!("'{selector}' is not a valid selector"));
    }
    Ok(())
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    let m = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if m.uid() == uid && m.gid() == gid {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| format!("chown {}: {e}", path.display()))
}

/// Reads the key of `selector` for `domain`.
pub fn load(data: &DataDir, domain: &str, selector: &str) -> Result<PrivateKey, String> {
    check_names(domain, selector)?;
    let path = key_path(data, domain, selector);
    let pem = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    PrivateKey::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))
}

/// Every key on disk, as (domain, selector), sorted.
pub fn list(data: &DataDir) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(domains) = fs::read_dir(data.keys().join("dkim")) else {
        return out;
    };
    for d in domains.flatten() {
        let domain = d.file_name().to_string_lossy().into_owned();
        let Ok(files) = fs::read_dir(d.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if let Some(selector) = name.strip_suffix(".key") {
                out.push((domain.clone(), selector.to_string()));
            }
        }
    }
    out.sort();
    out
}

fn pem_decode(pem: &str) -> Result<(String, Vec<u8>), String> {
    let start = pem.find("-----BEGIN ").ok_or("no PEM block")?;
    let rest = &pem[start + 11..];
    let label_end = rest.find("-----").ok_or("a broken PEM header")?;
    let label = rest[..label_end].to_string();
    let body = &rest[label_end + 5..];
    let end = body
        .find(&format!("-----END {label}-----"))
        .ok_or("no PEM end line")?;
    let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("PEM body: {e}"))?;
    Ok((label, der))
}

// ---- RSA key generation --------------------------------------------------------------------

/// Small primes for trial division before Miller-Rabin.
fn small_primes() -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    let mut n = 3u32;
    while out.len() < 1000 {
        if out
            .iter()
            .take_while(|p| *p * *p <= n)
            .all(|p| !n.is_multiple_of(*p))
        {
            out.push(n);
        }
        n += 2;
    }
    out
}

fn random_below(rng: &SystemRandom, bound: &BigUint) -> Result<BigUint, String> {
    let bytes = bound.bits().div_ceil(8) as usize;
    let mut buf = vec![0u8; bytes];
    loop {
        rng.fill(&mut buf).map_err(|_| "no random numbers")?;
        let v = BigUint::from_bytes_be(&buf);
        if &v < bound {
            return Ok(v);
        }
    }
}

/// Miller-Rabin with `rounds` random bases: false means composite, true means prime with
/// error below 4^-rounds.
fn probably_prime(n: &BigUint, rounds: u32, rng: &SystemRandom) -> Result<bool, String> {
    let one = BigUint::from(1u32);
    let two = BigUint::from(2u32);
    let n1 = n - &one;
    let s = n1.trailing_zeros().unwrap_or(0);
    let d = &n1 >> s;
    let span = n - BigUint::from(3u32);
    'bases: for _ in 0..rounds {
        let a = random_below(rng, &span)? + &two; // 2 ..= n-2
        let mut x = a.modpow(&d, n);
        if x == one || x == n1 {
            continue;
        }
        for _ in 1..s {
            x = x.modpow(&two, n);
            if x == n1 {
                continue 'bases;
            }
        }
        return Ok(false);
    }
    Ok(true)
}

fn random_prime(bits: u64, rng: &SystemRandom, small: &[u32]) -> Result<BigUint, String> {
    let mut buf = vec![0u8; (bits / 8) as usize];
    loop {
        rng.fill(&mut buf).map_err(|_| "no random numbers")?;
        // The top two bits set (the product has all 2 × bits bits), odd.
        buf[0] |= 0xc0;
        let last = buf.len() - 1;
        buf[last] |= 1;
        let c = BigUint::from_bytes_be(&buf);
        if small.iter().any(|&p| (&c % p) == BigUint::ZERO) {
            continue;
        }
        if probably_prime(&c, 64, rng)? {
            return Ok(c);
        }
    }
}

/// A new RSA-2048 key (e = 65537) as PKCS#1 DER, validated by ring.
fn rsa_2048(rng: &SystemRandom) -> Result<Vec<u8>, String> {
    let small = small_primes();
    let e = BigUint::from(65537u32);
    let one = BigUint::from(1u32);
    for _ in 0..16 {
        let a = random_prime(1024, rng, &small)?;
        let b = random_prime(1024, rng, &small)?;
        // ring wants p > q.
        let (p, q) = if a > b { (a, b) } else { (b, a) };
        if p == q {
            continue;
        }
        let n = &p * &q;
        if n.bits() != 2048 {
            continue;
        }
        let (p1, q1) = (&p - &one, &q - &one);
        let phi = &p1 * &q1;
        let Some(d) = e.modinv(&phi) else {
            continue;
        };
        let Some(qinv) = q.modinv(&p) else {
            continue;
        };
        let dp = &d % &p1;
        let dq = &d % &q1;
        let der = der_sequence(
            &[
                der_uint(&BigUint::ZERO),
                der_uint(&n),
                der_uint(&e),
                der_uint(&d),
                der_uint(&p),
                der_uint(&q),
                der_uint(&dp),
                der_uint(&dq),
                der_uint(&qinv),
            ]
            .concat(),
        );
        RsaKeyPair::from_der(&der).map_err(|e| format!("the generated RSA key: {e}"))?;
        return Ok(der);
    }
    Err("could not generate an RSA key".into())
}

fn der_len(n: usize) -> Vec<u8> {
    if n < 0x80 {
        vec![n as u8]
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        let mut out = vec![0x80 | bytes.len() as u8];
        out.extend(bytes);
        out
    }
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(content.len()));
    out.extend_from_slice(content);
    out
}

fn der_uint(v: &BigUint) -> Vec<u8> {
    let mut bytes = v.to_bytes_be();
    if bytes[0] & 0x80 != 0 {
        bytes.insert(0, 0);
    }
    der_tlv(0x02, &bytes)
}

fn der_sequence(content: &[u8]) -> Vec<u8> {
    der_tlv(0x30, content)
}

/// SubjectPublicKeyInfo { rsaEncryption, RSAPublicKey }.
fn rsa_spki(rsa_public_key: &[u8]) -> Vec<u8> {
    // SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }
    const ALGORITHM: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0u8];
    bits.extend_from_slice(rsa_public_key);
    der_sequence(&[ALGORITHM.to_vec(), der_tlv(0x03, &bits)].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_keys_round_trip_and_publish_their_raw_public_key() {
        let k = PrivateKey::generate(Algorithm::Ed25519).unwrap();
        let back = PrivateKey::from_pem(&k.to_pem()).unwrap();
        assert_eq!(back.algorithm, Algorithm::Ed25519);
        assert_eq!(back.der, k.der);
        assert_eq!(k.public_key().unwrap().len(), 32);
        assert!(
            k.dns_record()
                .unwrap()
                .starts_with("v=DKIM1; k=ed25519; p=")
        );
        assert_eq!(format!("{k:?}"), "PrivateKey(Ed25519)");
    }

    #[test]
    fn generated_rsa_keys_are_valid_2048_bit_keys_ring_signs_with() {
        let k = PrivateKey::generate(Algorithm::Rsa).unwrap();
        let pair = RsaKeyPair::from_der(&k.der).unwrap();
        assert_eq!(pair.public().modulus_len(), 256);
        let back = PrivateKey::from_pem(&k.to_pem()).unwrap();
        assert_eq!(back.algorithm, Algorithm::Rsa);
        assert!(k.to_pem().starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        // SPKI: SEQUENCE, the rsaEncryption OID, then the key.
        let spki = k.public_key().unwrap();
        assert_eq!(spki[0], 0x30);
        assert!(
            spki.windows(9)
                .any(|w| w == [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01])
        );
        let other = PrivateKey::generate(Algorithm::Rsa).unwrap();
        assert_ne!(other.der, k.der);
    }

    #[test]
    fn miller_rabin_tells_primes_from_composites() {
        let rng = SystemRandom::new();
        // 2^127 - 1 is prime; a Carmichael number and a product of two primes are not.
        let m127 = (BigUint::from(1u32) << 127) - BigUint::from(1u32);
        assert!(probably_prime(&m127, 32, &rng).unwrap());
        assert!(!probably_prime(&BigUint::from(561u32), 32, &rng).unwrap());
        assert!(!probably_prime(&(&m127 * BigUint::from(1_000_003u32)), 32, &rng).unwrap());
    }

    #[test]
    fn keys_are_written_once_0600_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        fs::create_dir_all(data.keys()).unwrap();
        let k = PrivateKey::generate(Algorithm::Ed25519).unwrap();
        let p = write_new(&data, "Hospital.Example.", "pal1", &k).unwrap();
        assert_eq!(p, data.keys().join("dkim/hospital.example/pal1.key"));
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert!(
            write_new(&data, "hospital.example", "pal1", &k)
                .unwrap_err()
                .contains("never replaced")
        );
        assert_eq!(load(&data, "hospital.example", "pal1").unwrap().der, k.der);
        assert_eq!(
            list(&data),
            vec![("hospital.example".to_string(), "pal1".to_string())]
        );
    }

    #[test]
    fn selectors_and_foreign_pem_are_checked() {
        assert!(valid_selector("pal202612"));
        assert!(valid_selector("a-b.c"));
        assert!(!valid_selector("../x"));
        assert!(!valid_selector(""));
        assert!(!valid_selector("-a"));
        assert!(
            PrivateKey::from_pem("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n")
                .is_err()
        );
        assert!(PrivateKey::from_pem("garbage").is_err());
    }
}
