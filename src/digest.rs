//! SHA-256 digests and their hex form: API keys are stored as digests, idempotency keys and
//! request bodies are fingerprinted with them, and `/metrics` compares tokens through them (in
//! constant time for equal lengths). A room of its own so that `auth`, `service` and `api`
//! share it without importing each other. Knows nothing else.

use sha2::{Digest, Sha256};

/// SHA-256 of `text`'s UTF-8 bytes.
pub fn hash(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_of_abc_is_the_published_one() {
        // FIPS 180-2, appendix B.1
        assert_eq!(
            hex(&hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
