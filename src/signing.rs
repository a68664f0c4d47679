//! Webhook signatures: base64(HMAC-SHA256(secret, raw body)), the scheme Shopify
//! (PLATFORMS.md §1.7) and WooCommerce (§2.4) both use. One place signs (simulators) and
//! verifies (intake) them; verification compares in constant time.
//!
//! May depend on: nothing else in the crate.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureProblem {
    /// The signature is not standard base64.
    #[error("signature is not base64")]
    Malformed,
    /// It does not match the body under the secret (also for an empty secret).
    #[error("signature does not match the body")]
    Mismatch,
}

/// base64(HMAC-SHA256(key = `secret`, msg = `body`)).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .expect("HMAC-SHA256 accepts keys of any length");
    mac.update(body);
    BASE64.encode(mac.finalize().into_bytes())
}

/// Checks `signature` against the raw `body` in constant time (`verify_slice` uses
/// `subtle`). An empty secret never verifies.
pub fn verify(secret: &str, body: &[u8], signature: &str) -> Result<(), SignatureProblem> {
    let tag = BASE64
        .decode(signature.trim())
        .map_err(|_| SignatureProblem::Malformed)?;
    if secret.is_empty() {
        return Err(SignatureProblem::Mismatch);
    }
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .expect("HMAC-SHA256 accepts keys of any length");
    mac.update(body);
    mac.verify_slice(&tag)
        .map_err(|_| SignatureProblem::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_and_secret() {
        let signature = sign("secret", b"{\"id\":1}");
        assert_eq!(verify("secret", b"{\"id\":1}", &signature), Ok(()));
        assert_eq!(
            verify("secret", b"{\"id\":2}", &signature),
            Err(SignatureProblem::Mismatch)
        );
        assert_eq!(
            verify("other", b"{\"id\":1}", &signature),
            Err(SignatureProblem::Mismatch)
        );
        assert_eq!(
            verify("", b"{\"id\":1}", &signature),
            Err(SignatureProblem::Mismatch)
        );
        assert_eq!(
            verify("secret", b"x", "not base64!"),
            Err(SignatureProblem::Malformed)
        );
    }
}
