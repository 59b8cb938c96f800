//! Where the `encrypt` action sends each recipient (ARCHITECTURE.md, "Gateway encryption"):
//! S/MIME to a partner's certificates, else enforced TLS to a destination whose TLS policy is
//! `required` or `verified`, else nowhere — the rules check then holds the recipient in
//! quarantine (`encryption pending: …`). Never clear text.
//!
//! The S/MIME copy is an edited artifact ([`palisade_policy::Edit::Encrypt`]), written and
//! fsync'd before the 250 like any other copy: the queue, the HA replica and a retry all carry
//! the ciphertext, and a partner certificate changed later applies to new mail.

use std::sync::Arc;

use palisade_crypto::GatewayKey;
use palisade_store::config::OutboundTls;
use palisade_store::{Config, DataDir};

/// The gateway's own S/MIME certificate and key, under `DIR/keys/smime/`.
pub const GATEWAY_CERT: &str = "smime/gateway.crt";
pub const GATEWAY_KEY: &str = "smime/gateway.key";
/// The gateway's OpenPGP key (armored), under `DIR/keys/openpgp/`.
pub const GATEWAY_PGP_PUBLIC: &str = "openpgp/gateway.pub.asc";
pub const GATEWAY_PGP_SECRET: &str = "openpgp/gateway.sec.asc";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// S/MIME to this partner's certificates.
    Smime { partner: String },
    /// OpenPGP (PGP/MIME) to this partner's key.
    Pgp { partner: String },
    /// Plain content over TLS that the destination's policy enforces.
    Tls { policy: String },
    /// No way to protect it: hold.
    None,
}

#[derive(Default)]
pub struct Encryption {
    cfg: Option<Arc<Config>>,
    gateway: Option<GatewayKey>,
    pgp: Option<palisade_crypto::PgpKey>,
    /// `encryption.smime_ca_file`, DER: the CAs signers' chains may reach.
    anchors: Vec<Vec<u8>>,
    /// Every partner certificate, DER: signers trusted as they are.
    pinned: Vec<Vec<u8>>,
    /// Every partner's OpenPGP key block: the signers OpenPGP mail is checked against.
    pinned_pgp: Vec<String>,
}

/// What the gateway made of an inbound message's S/MIME (`Envelope::crypto`): recorded in
/// the `smime` check's facts, its `Authentication-Results` and the message's tracking.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unwrapped {
    /// `smime` or `openpgp`.
    pub scheme: String,
    /// `not_encrypted`, `decrypted`, `not_addressed` (encrypted to someone else), `failed`.
    pub decryption: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
    /// `none`, `valid`, `invalid`.
    pub signature: String,
    /// The signer's certificate subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// The addresses the signer's certificate names, lower case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signer_emails: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer_fingerprint: Option<String>,
    /// How the signer is trusted: `partner` (a pinned partner certificate), `ca` (its chain
    /// reaches `encryption.smime_ca_file`), `untrusted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<String>,
    /// What went wrong, for `failed` and `invalid`, or why `not_addressed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether the start of a message (`head`: its header section and what follows) announces
/// S/MIME or OpenPGP content: worth reading the whole message for
/// [`Encryption::open_inbound`].
pub fn looks_encrypted(head: &[u8]) -> bool {
    let end = super::edit::header_end(head);
    let h = head[..end].to_ascii_lowercase();
    let has = |n: &[u8]| h.windows(n.len()).any(|w| w == n);
    if has(b"application/pkcs7-mime")
        || has(b"application/x-pkcs7-mime")
        || has(b"pkcs7-signature")
        || has(b"application/pgp-encrypted")
    {
        return true;
    }
    let body = &head[end..];
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    body[start..].starts_with(b"-----BEGIN PGP MESSAGE-----")
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryption")
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

impl Encryption {
    /// The routes of `cfg`, and the gateway key from `data` when there is one (without it,
    /// S/MIME mail is encrypted but not signed).
    pub fn from_config(cfg: &Config, data: Option<&DataDir>) -> Encryption {
        let gateway = data.and_then(|d| {
            let cert = d.keys().join(GATEWAY_CERT);
            let key = d.keys().join(GATEWAY_KEY);
            if !cert.exists() {
                return None;
            }
            let loaded = std::fs::read_to_string(&cert)
                .and_then(|c| Ok((c, std::fs::read_to_string(&key)?)))
                .map_err(|e| e.to_string())
                .and_then(|(c, k)| GatewayKey::from_pem(&c, &k).map_err(|e| e.to_string()));
            match loaded {
                Ok(k) => Some(k),
                Err(e) => {
                    tracing::error!(event = "smime.gateway_key_unusable", error = %e,
                        "S/MIME mail leaves unsigned");
                    None
                }
            }
        });
        let ca_file = cfg.encryption.smime_ca_file.trim();
        let anchors = if ca_file.is_empty() {
            Vec::new()
        } else {
            match std::fs::read_to_string(ca_file)
                .map_err(|e| e.to_string())
                .and_then(|t| palisade_crypto::pem_certificates(&t).map_err(|e| e.to_string()))
            {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(event = "smime.ca_file_unusable", file = %ca_file, error = %e,
                        "signers are trusted only by partner certificates");
                    Vec::new()
                }
            }
        };
        let pinned = cfg.partners.iter().flat_map(|p| p.certificates()).collect();
        let pgp = data.and_then(|d| {
            let path = d.keys().join(GATEWAY_PGP_SECRET);
            if !path.exists() {
                return None;
            }
            match std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| palisade_crypto::PgpKey::from_armored(&t).map_err(|e| e.to_string()))
            {
                Ok(k) => Some(k),
                Err(e) => {
                    tracing::error!(event = "openpgp.gateway_key_unusable", error = %e,
                        "OpenPGP mail leaves unsigned and inbound OpenPGP is not decrypted");
                    None
                }
            }
        });
        Encryption {
            cfg: Some(Arc::new(cfg.clone())),
            gateway,
            pgp,
            anchors,
            pinned,
            pinned_pgp: cfg
                .partners
                .iter()
                .filter(|p| !p.pgp.trim().is_empty())
                .map(|p| p.pgp.clone())
                .collect(),
        }
    }

    /// Opens an inbound message's S/MIME: (the message with its encryption removed, when the
    /// gateway decrypted it; what was found).
    pub fn open_inbound(&self, message: &[u8]) -> (Option<Vec<u8>>, Unwrapped) {
        use palisade_crypto::{Decryption, Signature};
        let (scheme, o) = if palisade_crypto::is_pgp(message) {
            let o = palisade_crypto::pgp_open(message, self.pgp.as_ref(), &self.pinned_pgp);
            (
                "openpgp",
                palisade_crypto::Opened {
                    message: o.message,
                    decryption: o.decryption,
                    signature: o.signature,
                },
            )
        } else {
            (
                "smime",
                palisade_crypto::open(message, self.gateway.as_ref(), &self.anchors, &self.pinned),
            )
        };
        let mut u = Unwrapped {
            scheme: scheme.into(),
            decryption: String::new(),
            cipher: None,
            signature: "none".into(),
            signer: None,
            signer_emails: Vec::new(),
            signer_fingerprint: None,
            trust: None,
            error: None,
        };
        u.decryption = match o.decryption {
            Decryption::NotEncrypted => "not_encrypted".into(),
            Decryption::Decrypted { cipher } => {
                u.cipher = Some(cipher);
                "decrypted".into()
            }
            Decryption::NotAddressed(e) => {
                u.error = Some(e);
                "not_addressed".into()
            }
            Decryption::Failed(e) => {
                u.error = Some(e);
                "failed".into()
            }
        };
        match o.signature {
            Signature::Unsigned => {}
            Signature::Valid {
                signer,
                chain_valid,
                pinned,
            } => {
                u.signature = "valid".into();
                u.trust = Some(
                    if pinned {
                        "partner"
                    } else if chain_valid == Some(true) {
                        "ca"
                    } else {
                        "untrusted"
                    }
                    .into(),
                );
                u.signer = Some(signer.subject);
                u.signer_emails = signer.emails;
                u.signer_fingerprint = Some(signer.fingerprint);
            }
            Signature::Invalid(e) => {
                u.signature = "invalid".into();
                u.error = Some(e);
            }
        }
        (o.message, u)
    }

    /// The subject tag that asks for encryption (`filter.encrypt_tag`), when set.
    pub fn tag(&self) -> Option<&str> {
        self.cfg
            .as_ref()
            .map(|c| c.filter.encrypt_tag.trim())
            .filter(|t| !t.is_empty())
    }

    /// How mail to `address` can be protected.
    pub fn route(&self, address: &str) -> Route {
        let Some(cfg) = &self.cfg else {
            return Route::None;
        };
        let Some(domain) = address
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
        else {
            return Route::None;
        };
        if let Some(p) = cfg.partner_for(&domain) {
            use palisade_store::config::PartnerMethod;
            let smime = !p.smime.is_empty();
            let pgp = !p.pgp.trim().is_empty();
            let partner = p.name.clone();
            match p.prefer {
                PartnerMethod::Smime if smime => return Route::Smime { partner },
                PartnerMethod::Smime if pgp => return Route::Pgp { partner },
                PartnerMethod::Pgp if pgp => return Route::Pgp { partner },
                PartnerMethod::Pgp if smime => return Route::Smime { partner },
                _ => {}
            }
        }
        // Enforced TLS counts only when the connection goes to the destination itself (its
        // MX hosts or a static route), not through a smarthost.
        let key = crate::outbound::route_key(cfg, &domain);
        let Some(dest) = key
            .strip_prefix("mx:")
            .or_else(|| key.strip_prefix("route:"))
        else {
            return Route::None;
        };
        match cfg.tls_policy_for(dest) {
            (OutboundTls::Required | OutboundTls::Verified, policy) => Route::Tls {
                policy: policy
                    .map(|p| format!("tls_policy {}", p.destination))
                    .unwrap_or_else(|| "delivery.tls".into()),
            },
            _ => Route::None,
        }
    }

    /// `message` (as it will leave) signed with the gateway key, when there is one, and
    /// encrypted to `partner`'s certificates.
    pub fn protect(&self, partner: &str, message: &[u8]) -> Result<Vec<u8>, String> {
        let cfg = self.cfg.as_ref().ok_or("no configuration")?;
        let p = cfg
            .partners
            .iter()
            .find(|p| p.name == partner)
            .ok_or_else(|| format!("partner '{partner}' is no longer in the configuration"))?;
        let certs = p.certificates();
        palisade_crypto::protect(message, &certs, self.gateway.as_ref()).map_err(|e| e.to_string())
    }

    /// `message` signed with the gateway's OpenPGP key, when there is one, and encrypted to
    /// `partner`'s OpenPGP key (PGP/MIME).
    pub fn pgp_protect(&self, partner: &str, message: &[u8]) -> Result<Vec<u8>, String> {
        let cfg = self.cfg.as_ref().ok_or("no configuration")?;
        let p = cfg
            .partners
            .iter()
            .find(|p| p.name == partner)
            .ok_or_else(|| format!("partner '{partner}' is no longer in the configuration"))?;
        palisade_crypto::pgp_protect(message, std::slice::from_ref(&p.pgp), self.pgp.as_ref())
            .map_err(|e| e.to_string())
    }
}
