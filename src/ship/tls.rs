//! TLS to the collector (RFC 5425): rustls with ring, trusting the
//! system's CA store (as OpenSSL finds it: `SSL_CERT_FILE`,
//! `SSL_CERT_DIR`, else the distribution's bundle), or only the CA file
//! the configuration names. Made on the shipping thread, and only when a
//! TLS collector is configured.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The client settings for a TLS collector: TLS 1.2 or 1.3, the server's
/// certificate checked against `ca` (a PEM file) or the system's store,
/// no client certificate.
pub(crate) fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs =
                CertificateDer::pem_file_iter(path).map_err(|e| format!("ca={}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("ca={}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("ca={}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "no CA certificate in the system's store (install ca-certificates, or name the collector's CA \
                     with ca=)"
                        .to_string(),
                );
            }
        }
    }
    if roots.is_empty() {
        return Err("no CA certificate to check the collector with".to_string());
    }
    // rustls 0.23.48 deprecated ring's provider because it has no
    // post-quantum key exchange (aws-lc-rs has); ring is kept for a small,
    // quick build with no C library of its own beyond its assembly. The
    // choice is the README's ("Dependencies").
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
