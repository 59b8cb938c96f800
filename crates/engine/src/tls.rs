//! TLS for both directions, on rustls with the ring provider (the one crypto stack).
//!
//! Inbound: the STARTTLS certificate from the configuration (created on first start by the
//! supervisor). Outbound: opportunistic TLS accepts any certificate (RFC 7435: encryption
//! against passive attackers, better than plaintext); verified policies (MTA-STS, DANE) build
//! on this later with real verification.

use std::sync::Arc;

use palisade_store::{Config, DataDir};
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
