//! TLS to the server, as libpq's `sslmode` and `sslrootcert` ask (rustls).
//!
//! - `disable`: plain text.
//! - `allow`, `prefer` (libpq's default): TLS when the server offers it,
//!   the certificate unchecked.
//! - `require`: TLS or no connection; the certificate is checked against
//!   the root certificate when one is given, unchecked otherwise (libpq's
//!   rule).
//! - `verify-ca`: TLS, the certificate signed by the root certificate.
//! - `verify-full`: that, and issued for the host the URL names.
//!
//! The root certificate is `sslrootcert=FILE` (PEM), `sslrootcert=system`
//! (the machine's store), else `~/.postgresql/root.crt` when it exists.
//! As libpq does, a Unix socket never carries TLS: it never leaves the machine.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How much of the server's certificate a connection checks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Check {
    /// Encrypted, the certificate taken as it comes.
    Nothing,
    /// Signed by the root certificate.
    Ca,
    /// Signed by the root certificate, for the host named.
    Full,
}

/// The `sslmode` and `sslrootcert` a URL gives, taken out of its parameters
/// (tokio-postgres knows neither `verify-*` nor `sslrootcert`).
pub(super) struct Settings {
    mode: String,
    root: Option<String>,
}

impl Settings {
    /// Takes `sslmode` and `sslrootcert` out of `params`; refuses the
    /// client-certificate parameters, which usertrail does not send.
    pub(super) fn take(params: &mut Vec<&str>) -> Result<Settings, String> {
        let mut settings = Settings { mode: "prefer".into(), root: None };
        let mut refused = None;
        params.retain(|param| {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            match name {
                "sslmode" => settings.mode = value.to_owned(),
                "sslrootcert" => settings.root = Some(value.to_owned()),
                "sslcert" | "sslkey" | "sslpassword" => refused = Some(name.to_owned()),
                _ => return true,
            }
            false
        });
        if let Some(name) = refused {
            return Err(format!("{name}: client certificates are not supported (use a password)"));
        }
        Ok(settings)
    }

    /// tokio-postgres's mode, and the connector for TCP hosts (`None`:
    /// plain text only).
    pub(super) fn connector(&self) -> Result<(SslMode, Option<MakeRustlsConnect>), String> {
        let (mode, asked) = match self.mode.as_str() {
            "disable" => return Ok((SslMode::Disable, None)),
            "allow" | "prefer" => (SslMode::Prefer, Check::Nothing),
            "require" => (SslMode::Require, Check::Nothing),
            "verify-ca" => (SslMode::Require, Check::Ca),
            "verify-full" => (SslMode::Require, Check::Full),
            other => {
                return Err(format!(
                    "sslmode={other}: not one of disable, allow, prefer, require, verify-ca, verify-full"
                ))
            }
        };
        let roots = self.roots()?;
        let check = match (asked, &roots) {
            (Check::Nothing, None) => Check::Nothing,
            // libpq's rule: given a root certificate, `require` checks the chain.
            (Check::Nothing, Some(_)) if self.mode == "require" => Check::Ca,
            (Check::Nothing, Some(_)) => Check::Nothing,
            (check, Some(_)) => check,
            (_, None) => {
                return Err(format!(
                    "sslmode={} needs the server's root certificate: sslrootcert=FILE, \
                     sslrootcert=system, or ~/.postgresql/root.crt",
                    self.mode
                ))
            }
        };
        // ring, not aws-lc-rs: no second C crypto library to build. rustls
        // deprecates it for lacking post-quantum key exchange, which the
        // TLS of PostgreSQL servers does not need.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = match (check, roots) {
            (Check::Nothing, _) | (_, None) => None,
            (_, Some(roots)) => Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("the root certificate: {e}"))?,
            ),
        };
        let verifier = Arc::new(Verifier { chain, name: check == Check::Full, provider: provider.clone() });
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok((mode, Some(MakeRustlsConnect::new(config))))
    }

    /// The root certificates `sslrootcert` names, or libpq's default file.
    fn roots(&self) -> Result<Option<RootCertStore>, String> {
        let mut roots = RootCertStore::empty();
        let file = match self.root.as_deref() {
            Some("system") => {
                let found = rustls_native_certs::load_native_certs();
                if let Some(e) = found.errors.first() {
                    return Err(format!("sslrootcert=system: the machine's certificates: {e}"));
                }
                roots.add_parsable_certificates(found.certs);
                return Ok(Some(roots));
            }
            Some(file) => PathBuf::from(file),
            None => {
                match std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".postgresql/root.crt")) {
                    Some(default) if default.exists() => default,
                    _ => return Ok(None),
                }
            }
        };
        let certs = CertificateDer::pem_file_iter(&file)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("sslrootcert {}: {e}", file.display()))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(format!("sslrootcert {}: no certificate in it", file.display()));
        }
        Ok(Some(roots))
    }
}

/// What a connection checks of the server's certificate: the chain against
/// the root certificate (`chain`), and with `name` the host it was issued
/// for; the handshake's signatures always.
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.name => Ok(ServerCertVerified::assertion()),
            checked => checked,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
