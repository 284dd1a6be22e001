//! Secret values: redacted in `Debug`, never `Display`ed or serialized,
//! compared in constant time, stored only as hashes.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A secret string (a raw token, a client secret, a code verifier).
///
/// `Debug` prints `[redacted]`; there is no `Display`, `Serialize` or
/// `PartialEq`. Read it with [`SecretString::expose_secret`], compare it with
/// [`SecretString::ct_eq`], store [`SecretString::hash`].
#[derive(Clone)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub const fn new(secret: String) -> Self {
        Self(secret)
    }

    /// The secret itself. Every call site is a place the secret leaves the
    /// wrapper: keep them few.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Constant-time equality with another candidate value.
    pub fn ct_eq(&self, other: &str) -> bool {
        self.0.as_bytes().ct_eq(other.as_bytes()).into()
    }

    /// The SHA-256 hash, the only form of a secret that is stored.
    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }

    /// A fresh random secret: `prefix` followed by the base64url encoding of
    /// `random` (use at least 32 bytes, 256 bits).
    pub fn random_with_prefix(prefix: &str, random: &[u8]) -> Self {
        let mut s = String::with_capacity(prefix.len() + random.len() * 4 / 3 + 2);
        s.push_str(prefix);
        URL_SAFE_NO_PAD.encode_string(random, &mut s);
        Self(s)
    }
}

/// HMAC-SHA256 ([RFC 2104]) of the concatenation of `parts` under `key`.
///
/// [RFC 2104]: https://www.rfc-editor.org/rfc/rfc2104
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        let digest: [u8; 32] = Sha256::digest(key).into();
        for (slot, b) in k.iter_mut().zip(digest) {
            *slot = b;
        }
    } else {
        for (slot, b) in k.iter_mut().zip(key) {
            *slot = *b;
        }
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let inner: [u8; 32] = inner.finalize().into();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// The SHA-256 hash of a secret; what stores keep instead of the secret.
///
/// High-entropy secrets (256-bit tokens) need no salt or slow hash: the
/// hash is a lookup key, and finding a preimage is infeasible. Equality is
/// constant-time. Serialized as unpadded base64url.
#[derive(Clone, Copy, Eq)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// Hashes a secret value.
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// A hash from its raw digest bytes (as a store read them back).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time check that `candidate` hashes to this value.
    pub fn matches(&self, candidate: &str) -> bool {
        *self == Self::of(candidate)
    }
}

impl PartialEq for SecretHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::hash::Hash for SecretHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Consistent with `PartialEq`: equal hashes have equal bytes.
        self.0.hash(state);
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A short prefix is enough to tell hashes apart in logs.
        let head = self.0.get(..4).unwrap_or_default();
        write!(f, "SecretHash({}..)", URL_SAFE_NO_PAD.encode(head))
    }
}

impl Serialize for SecretHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for SecretHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(serde::de::Error::custom)?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("a secret hash is 32 bytes"))?;
        Ok(Self(arr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = SecretString::from("iatk_supersecret");
        assert_eq!(format!("{s:?}"), "SecretString([redacted])");
        assert!(!format!("{:?}", s.hash()).contains("supersecret"));
    }

    #[test]
    fn comparisons() {
        let s = SecretString::from("abc");
        assert!(s.ct_eq("abc"));
        assert!(!s.ct_eq("abd"));
        assert!(!s.ct_eq("ab"));
        assert!(s.hash().matches("abc"));
        assert!(!s.hash().matches("abcd"));
        assert_eq!(s.hash(), SecretHash::of("abc"));
    }

    #[test]
    fn random_with_prefix_encodes_all_bits() {
        let s = SecretString::random_with_prefix("iatk_", &[0xff; 32]);
        assert!(s.expose_secret().starts_with("iatk_"));
        assert_eq!(s.expose_secret().len(), 5 + 43);
    }

    #[test]
    fn hmac_sha256_known_answers() {
        // RFC 4231 test cases 1, 2 and 6 (a key longer than the block).
        let hex = |b: [u8; 32]| crate::grant::hex(&b);
        assert_eq!(
            hex(hmac_sha256(&[0x0b; 20], &[b"Hi There"])),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(hmac_sha256(
                &[0xaa; 131],
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn hash_serde_round_trip() {
        let h = SecretHash::of("x");
        let j = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<SecretHash>(&j).unwrap(), h);
        assert!(serde_json::from_str::<SecretHash>("\"AAAA\"").is_err());
    }
}
