//! `RS256` (RSASSA-PKCS1-v1_5 with SHA-256) as a `jwt_compact::Algorithm`, verification only.
//!
//! jwt-compact has its own RSA support behind its `rsa` feature, but that feature switches on
//! `rand_core/getrandom` (RSA signing uses blinding), and `getrandom` does not build for
//! `wasm32-unknown-unknown` without a JavaScript or custom backend. The gateway only ever
//! verifies, which needs no randomness, so this module plugs the pure-Rust `rsa` crate into
//! jwt-compact's `Algorithm` trait with a signing key type that cannot exist. Token parsing, the
//! `alg` check and claims decoding stay jwt-compact's.

use std::borrow::Cow;

use jwt_compact::{Algorithm, AlgorithmSignature};
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use sha2::{Digest, Sha256};

/// The `RS256` algorithm. Verifies only: [`NoSigningKey`] has no values, so it cannot sign.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rs256;

/// A signing key for [`Rs256`]; uninhabited, because the gateway never issues RSA tokens.
#[derive(Debug)]
pub(crate) enum NoSigningKey {}

/// An RSA signature as it appears in the token. Its length must equal the modulus size; the
/// `rsa` crate checks that (and that the value is below the modulus) while verifying.
#[derive(Debug, Clone)]
pub(crate) struct RsaSignature(Vec<u8>);

impl AlgorithmSignature for RsaSignature {
    // Variable: it depends on the key (256 bytes for RSA-2048, 512 for RSA-4096).
    const LENGTH: Option<std::num::NonZeroUsize> = None;

    fn try_from_slice(slice: &[u8]) -> anyhow::Result<Self> {
        Ok(Self(slice.to_vec()))
    }

    fn as_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0)
    }
}

impl Algorithm for Rs256 {
    type SigningKey = NoSigningKey;
    type VerifyingKey = RsaPublicKey;
    type Signature = RsaSignature;

    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("RS256")
    }

    fn sign(&self, signing_key: &NoSigningKey, _message: &[u8]) -> RsaSignature {
        match *signing_key {}
    }

    fn verify_signature(&self, signature: &RsaSignature, verifying_key: &RsaPublicKey, message: &[u8]) -> bool {
        let digest = Sha256::digest(message);
        verifying_key.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &signature.0).is_ok()
    }
}
