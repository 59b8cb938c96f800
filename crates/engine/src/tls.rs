//! TLS for both directions, on rustls with the ring provider (the one crypto stack).
//!
//! Inbound: the STARTTLS certificate from the configuration (created on first start by the
//! supervisor). Outbound: the destination's TLS policy ([`ClientConnectors::for_destination`]):
//! opportunistic and required TLS accept any certificate (RFC 7435: encryption against
//! passive attackers, better than plaintext); verified TLS checks the chain against the trust
//! anchors (`delivery.ca_file` and the policy's own `ca`) and the name with rustls' WebPKI
//! verifier (ring, the one stack).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use palisade_store::config::{OutboundTls, TlsPolicy};
use palisade_store::{Config, DataDir};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::EngineError;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The STARTTLS acceptor, or `None` if no certificate is configured or readable (then STARTTLS
/// is simply not offered, and the problem is logged).
pub(crate) fn load_server(
    data: &DataDir,
    cfg: &Config,
) -> Result<Option<TlsAcceptor>, EngineError> {
    let cert = data.resolve(&cfg.tls.cert);
    let key = data.resolve(&cfg.tls.key);
    if !cert.exists() || !key.exists() {
        tracing::warn!(event = "tls.no_certificate", cert = %cert.display(),
            "STARTTLS is not offered: no certificate");
        return Ok(None);
    }
    let certs = CertificateDer::pem_file_iter(&cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| EngineError::Tls(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| EngineError::Tls(format!("{}: {e}", key.display())))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| EngineError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| EngineError::Tls(e.to_string()))?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// Accepts any certificate but still checks the handshake signatures, so the session is
/// really encrypted to whoever holds the presented key.
#[derive(Debug)]
struct Opportunistic(Arc<CryptoProvider>);

impl ServerCertVerifier for Opportunistic {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub(crate) fn opportunistic_connector() -> TlsConnector {
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Opportunistic(provider)))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// `TLSv1.3 TLS13_AES_256_GCM_SHA384`, for Received headers and tracking.
pub(crate) fn describe(conn: &rustls::CommonState) -> String {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(v) => format!("{v:?}"),
        None => "TLS".to_string(),
    };
    match conn.negotiated_cipher_suite() {
        Some(s) => format!("{version} {:?}", s.suite()),
        None => version,
    }
}

/// Spool replication's client side (ARCHITECTURE.md, "Spool replication"): TLS 1.3 only; the
/// listener's certificate is not checked, because the peer is authenticated by the pair key
/// bound to this session's exporter, not by a certificate.
pub(crate) fn replication_client() -> Arc<rustls::ClientConfig> {
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Opportunistic(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

/// Spool replication's listening side: TLS 1.3 only, a throw-away self-signed certificate
/// made at start (see [`replication_client`] for why nothing checks it).
pub(crate) fn replication_server() -> Result<Arc<rustls::ServerConfig>, EngineError> {
    let cert = rcgen::generate_simple_self_signed(vec!["palisade-replication".to_string()])
        .map_err(|e| EngineError::Tls(e.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| EngineError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .map_err(|e| EngineError::Tls(e.to_string()))?;
    Ok(Arc::new(config))
}

/// The TLS a delivery connection must have: the mode of its destination's policy, the
/// connector that enforces it, and where the mode came from (for replies and logs).
#[derive(Clone)]
pub(crate) struct ClientTls {
    pub mode: OutboundTls,
    pub connector: TlsConnector,
    /// `verified`: names accepted besides the host's own.
    pub names: Vec<String>,
    /// `tls_policy partner.test` or `delivery.tls`.
    pub source: String,
}

/// Accepts a certificate that chains to the trust anchors and names the host connected to or
/// one of the policy's `names`.
#[derive(Debug)]
struct Verified {
    inner: Arc<WebPkiServerVerifier>,
    names: Vec<ServerName<'static>>,
}

impl ServerCertVerifier for Verified {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let first =
            self.inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        let name_error = |e: &rustls::Error| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName
                        | rustls::CertificateError::NotValidForNameContext { .. }
                )
            )
        };
        match first {
            Err(e) if name_error(&e) => {
                for name in &self.names {
                    if let Ok(ok) =
                        self.inner
                            .verify_server_cert(end_entity, intermediates, name, ocsp, now)
                    {
                        return Ok(ok);
                    }
                }
                Err(e)
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The delivery client's connectors: one that accepts any certificate, and the verifying ones
/// built on first use per (trust anchors, names) and kept (at most [`MAX_VERIFIED`]).
pub(crate) struct ClientConnectors {
    opportunistic: TlsConnector,
    verified: Mutex<HashMap<String, TlsConnector>>,
}

const MAX_VERIFIED: usize = 64;

impl ClientConnectors {
    pub fn new() -> ClientConnectors {
        ClientConnectors {
            opportunistic: opportunistic_connector(),
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// The TLS for a connection to `destination` (see `Config::tls_policy_for`). An error when
    /// verified TLS has no trust anchors to verify with.
    pub fn for_destination(&self, cfg: &Config, destination: &str) -> Result<ClientTls, String> {
        let (mode, policy) = cfg.tls_policy_for(destination);
        let source = match policy {
            Some(p) => format!("tls_policy {}", p.destination),
            None => "delivery.tls".to_string(),
        };
        let names: Vec<String> = policy.map(|p| p.names.clone()).unwrap_or_default();
        let connector = if mode == OutboundTls::Verified {
            self.verified(cfg, policy, &names)
                .map_err(|e| format!("{source} is 'verified' but {e}"))?
        } else {
            self.opportunistic.clone()
        };
        Ok(ClientTls {
            mode,
            connector,
            names,
            source,
        })
    }

    fn verified(
        &self,
        cfg: &Config,
        policy: Option<&TlsPolicy>,
        names: &[String],
    ) -> Result<TlsConnector, String> {
        let ca = policy.map(|p| p.ca.as_str()).unwrap_or("");
        let key = format!(
            "{}\0{ca}\0{}",
            cfg.delivery.ca_file.display(),
            names.join(",")
        );
        let mut cache = self.verified.lock().expect("connector cache");
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        let mut roots = rustls::RootCertStore::empty();
        let system = match CertificateDer::pem_file_iter(&cfg.delivery.ca_file)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        {
            Ok(certs) => certs,
            Err(e) => {
                tracing::warn!(event = "tls.no_trust_anchors", file = %cfg.delivery.ca_file.display(), error = %e);
                Vec::new()
            }
        };
        roots.add_parsable_certificates(system);
        if let Some(p) = policy {
            roots.add_parsable_certificates(p.ca_certificates());
        }
        if roots.is_empty() {
            return Err(format!(
                "there are no trust anchors (delivery.ca_file {} unreadable or empty, no ca in the policy)",
                cfg.delivery.ca_file.display()
            ));
        }
        let provider = provider();
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| e.to_string())?;
        let names = names
            .iter()
            .filter_map(|n| ServerName::try_from(n.clone()).ok())
            .collect();
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verified { inner, names }))
            .with_no_client_auth();
        let connector = TlsConnector::from(Arc::new(config));
        if cache.len() >= MAX_VERIFIED {
            cache.clear();
        }
        cache.insert(key, connector.clone());
        Ok(connector)
    }
}

/// The name a verified peer's certificate was accepted for: the host's own, else the first of
/// `names` it is valid for.
pub(crate) fn verified_name(conn: &rustls::CommonState, host: &str, names: &[String]) -> String {
    let Some(ee) = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| webpki::EndEntityCert::try_from(c).ok())
    else {
        return host.to_string();
    };
    std::iter::once(host)
        .chain(names.iter().map(String::as_str))
        .find(|n| {
            ServerName::try_from(*n)
                .is_ok_and(|sn| ee.verify_is_valid_for_subject_name(&sn).is_ok())
        })
        .unwrap_or(host)
        .to_string()
}
