//! X.509-SVIDs: the SPIFFE ID a client certificate states. A front door that terminates
//! mTLS (and has verified the chain to its trust bundle) reads the leaf here; the SPIFFE ID
//! it returns becomes `RequestFacts::peer_spiffe_id`, which authenticates the identity
//! holding it. The SPIFFE X.509-SVID standard asks for exactly one URI SAN, which is the
//! SPIFFE ID, and a leaf that is not a CA; anything else is refused, never guessed.

use remit_core::SpiffeId;
use x509_cert::Certificate;
use x509_cert::der::Decode;
use x509_cert::der::oid::AssociatedOid;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, SubjectAltName};

/// Largest client certificate read (DER).
pub const MAX_SVID_DER_BYTES: usize = 16 * 1024;

/// Why a certificate is not an X.509-SVID remit accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SvidError {
    /// Larger than [`MAX_SVID_DER_BYTES`].
    #[error("the client certificate is larger than {MAX_SVID_DER_BYTES} bytes")]
    TooLarge,
    /// Not a DER X.509 certificate, or an extension remit reads is malformed.
    #[error("the client certificate cannot be read: {0}")]
    Malformed(String),
    /// No URI SAN.
    #[error("the client certificate has no URI SAN, so it names no SPIFFE ID")]
    NoUriSan,
    /// More than one URI SAN (or more than one SAN extension).
    #[error("the client certificate has {0} URI SANs; an X.509-SVID has exactly one")]
    SeveralUriSans(usize),
    /// The URI SAN is not a SPIFFE ID.
    #[error("the client certificate's URI SAN is not a SPIFFE ID: {0}")]
    NotSpiffe(String),
    /// A CA certificate presented as a client's.
    #[error("the client certificate is a CA certificate, not an X.509-SVID leaf")]
    CaCertificate,
}

/// The SPIFFE ID of an X.509-SVID leaf certificate (DER). It does not verify the chain:
/// call it on the leaf a TLS handshake verified against the trust bundle.
pub fn spiffe_id_of(der: &[u8]) -> Result<SpiffeId, SvidError> {
    if der.len() > MAX_SVID_DER_BYTES {
        return Err(SvidError::TooLarge);
    }
    let cert = Certificate::from_der(der).map_err(|e| SvidError::Malformed(e.to_string()))?;
    let extensions = cert.tbs_certificate.extensions.as_deref().unwrap_or(&[]);
    let mut uris: Vec<String> = Vec::new();
    let mut san_extensions = 0usize;
    for ext in extensions {
        if ext.extn_id == SubjectAltName::OID {
            san_extensions += 1;
            let san = SubjectAltName::from_der(ext.extn_value.as_bytes())
                .map_err(|e| SvidError::Malformed(format!("its SAN extension: {e}")))?;
            for name in san.0 {
                if let GeneralName::UniformResourceIdentifier(u) = name {
                    uris.push(u.as_str().to_owned());
                }
            }
        } else if ext.extn_id == BasicConstraints::OID {
            let bc = BasicConstraints::from_der(ext.extn_value.as_bytes())
                .map_err(|e| SvidError::Malformed(format!("its basic constraints: {e}")))?;
            if bc.ca {
                return Err(SvidError::CaCertificate);
            }
        }
    }
    if san_extensions > 1 {
        return Err(SvidError::SeveralUriSans(uris.len().max(2)));
    }
    match uris.as_slice() {
        [] => Err(SvidError::NoUriSan),
        [one] => SpiffeId::parse(one).map_err(|e| SvidError::NotSpiffe(e.to_string())),
        more => Err(SvidError::SeveralUriSans(more.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints as Bc, CertificateParams, IsCa, KeyPair, SanType};

    fn cert(sans: &[SanType], ca: bool) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans.to_vec();
        if ca {
            params.is_ca = IsCa::Ca(Bc::Unconstrained);
        }
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(s.to_owned().try_into().unwrap())
    }

    #[test]
    fn exactly_one_spiffe_uri_san_is_the_spiffe_id() {
        let id = spiffe_id_of(&cert(&[uri("spiffe://example.org/ns/prod/sa/a")], false)).unwrap();
        assert_eq!(id.as_str(), "spiffe://example.org/ns/prod/sa/a");
        // Other kinds of SAN beside the one URI are allowed by the standard.
        let with_dns = cert(
            &[
                SanType::DnsName("a.example.org".try_into().unwrap()),
                uri("spiffe://example.org/a"),
            ],
            false,
        );
        assert_eq!(
            spiffe_id_of(&with_dns).unwrap().as_str(),
            "spiffe://example.org/a"
        );
    }

    #[test]
    fn anything_but_one_spiffe_uri_san_on_a_leaf_is_refused() {
        let cases: Vec<(Vec<u8>, SvidError)> = vec![
            (cert(&[], false), SvidError::NoUriSan),
            (
                cert(
                    &[SanType::DnsName("a.example.org".try_into().unwrap())],
                    false,
                ),
                SvidError::NoUriSan,
            ),
            (
                cert(
                    &[uri("spiffe://example.org/a"), uri("spiffe://example.org/b")],
                    false,
                ),
                SvidError::SeveralUriSans(2),
            ),
            (
                cert(
                    &[uri("spiffe://example.org/a"), uri("https://example.org/a")],
                    false,
                ),
                SvidError::SeveralUriSans(2),
            ),
            (
                cert(&[uri("spiffe://example.org/a")], true),
                SvidError::CaCertificate,
            ),
        ];
        for (der, want) in cases {
            assert_eq!(spiffe_id_of(&der), Err(want));
        }
        for bad in [
            "https://example.org/a",
            "spiffe://Example.org/a",
            "spiffe://example.org/a/../b",
            "spiffe://example.org/a?q",
        ] {
            assert!(
                matches!(
                    spiffe_id_of(&cert(&[uri(bad)], false)),
                    Err(SvidError::NotSpiffe(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn hostile_bytes_are_refused_not_panicked_on() {
        let good = cert(&[uri("spiffe://example.org/a")], false);
        for n in [0, 1, 10, good.len() / 2, good.len() - 1] {
            assert!(
                matches!(spiffe_id_of(&good[..n]), Err(SvidError::Malformed(_))),
                "truncated to {n}"
            );
        }
        assert!(matches!(
            spiffe_id_of(b"-----BEGIN CERTIFICATE-----"),
            Err(SvidError::Malformed(_))
        ));
        let mut flipped = good.clone();
        for i in (0..flipped.len()).step_by(7) {
            flipped[i] ^= 0xff;
            // Whatever a flipped byte does, the answer is an error or one SPIFFE ID.
            let _ = spiffe_id_of(&flipped);
            flipped[i] ^= 0xff;
        }
        assert_eq!(
            spiffe_id_of(&vec![0x30; MAX_SVID_DER_BYTES + 1]),
            Err(SvidError::TooLarge)
        );
    }
}
