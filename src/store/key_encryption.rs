//! Encryption at rest of private signing keys: the [`KeyEncryption`] hook
//! a persistent [`super::KeyStore`] seals keys with, and a ready
//! implementation, [`Aes256GcmKeyEncryption`] (features `sqlite` or
//! `postgres`), from a key-encryption key the host supplies.
//!
//! Whoever can read a signing key can sign access tokens every resource
//! server accepts and ID tokens every client accepts. With sealed keys, a
//! copy of the database (a backup, a replica, an export, SQL injection in
//! the host's own code) holds only ciphertext; the key-encryption key
//! lives elsewhere (a file, a secret manager, a KMS behind a custom
//! [`KeyEncryption`]). And because sealing is authenticated and bound to
//! the row, someone who can WRITE the database but not read the
//! key-encryption key cannot plant a signing key of their own choosing.

use async_trait::async_trait;

use super::StoreError;

/// Seals (encrypts and authenticates) private keys for storage, and opens
/// them again.
///
/// # Security
/// - `seal` must be authenticated encryption: `open` fails, and returns
///   nothing, for any modified ciphertext, for another `context`, and for
///   a ciphertext sealed under a key-encryption key it does not hold.
/// - `context` identifies the record (the store passes the project, key
///   id and algorithm): bind it as associated data, so a sealed key cannot
///   be moved to another record or project. It is not secret and is not
///   part of the output.
/// - Never log the plaintext, the key-encryption key or the sealed bytes'
///   plaintext; errors carry no key material.
#[async_trait]
pub trait KeyEncryption: Send + Sync {
    /// Encrypts `plaintext` (a private key's DER form), bound to `context`.
    ///
    /// # Errors
    /// [`StoreError`] when encryption is not possible (no randomness, a
    /// KMS that does not answer).
    async fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, StoreError>;

    /// Decrypts what [`KeyEncryption::seal`] produced for the same
    /// `context`.
    ///
    /// # Errors
    /// [`StoreError`] for a modified or foreign ciphertext, another
    /// context, or an unknown key-encryption key.
    async fn open(&self, sealed: &[u8], context: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, StoreError>;

    /// Whether `sealed` should be sealed again with the current
    /// key-encryption key (it was sealed under an older one); stores
    /// re-seal such records when asked to (e.g.
    /// `SqliteStore::reseal_signing_keys`). Default: never.
    fn needs_reseal(&self, _sealed: &[u8]) -> bool {
        false
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use self::aes::{Aes256GcmKeyEncryption, InvalidKeyEncryptionKey};

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod aes {
    use async_trait::async_trait;
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
    use ring::rand::{SecureRandom as _, SystemRandom};

    use super::{KeyEncryption, StoreError};

    /// The first bytes of every sealed record (format version 1).
    const MAGIC: &[u8; 4] = b"akw1";

    /// Bound into every seal, so a ciphertext of this format can never be
    /// taken for another protocol's.
    const DOMAIN: &[u8] = b"authio-mcp signing key seal v1\0";

    /// The longest key-encryption key id.
    const MAX_ID: usize = 64;

    /// A key-encryption key that cannot be used: its id is empty, longer
    /// than 64 bytes, or holds characters other than ASCII letters, digits,
    /// `.`, `_` and `-`; or it repeats an id already given.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
    #[error("key-encryption key ids are 1 to 64 characters of [A-Za-z0-9._-], each used once")]
    pub struct InvalidKeyEncryptionKey;

    /// [`KeyEncryption`] with AES-256-GCM (through `ring`) under a 256-bit
    /// key-encryption key the host supplies, with a random 96-bit nonce per
    /// seal.
    ///
    /// A sealed record is `akw1`, the length of the key-encryption key's
    /// id (one byte), the id, the nonce, then the ciphertext and its
    /// 16-byte tag. The associated data is a fixed domain string, the
    /// header (magic and id) and the store's context, so neither the
    /// record nor its header can be altered or moved unnoticed.
    ///
    /// Rotating the key-encryption key: build with the new key and
    /// [`Self::with_previous_key`] for the old one (still opened, never
    /// used to seal), call the store's `reseal_signing_keys`, then drop
    /// the old key. Random nonces keep a key safe for far more seals
    /// than signing-key rotation will ever make (2^32 by NIST SP 800-38D).
    ///
    /// `Debug` shows the key ids only.
    pub struct Aes256GcmKeyEncryption {
        current: (String, LessSafeKey),
        previous: Vec<(String, LessSafeKey)>,
        random: SystemRandom,
    }

    impl std::fmt::Debug for Aes256GcmKeyEncryption {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Aes256GcmKeyEncryption")
                .field("current", &self.current.0)
                .field("previous", &self.previous.iter().map(|(id, _)| id).collect::<Vec<_>>())
                .finish_non_exhaustive()
        }
    }

    impl Aes256GcmKeyEncryption {
        /// Seals with `key`, named `key_id` (recorded in every sealed
        /// record so that a later key can be told apart).
        ///
        /// # Errors
        /// [`InvalidKeyEncryptionKey`] for a malformed id.
        pub fn new(key_id: &str, key: &[u8; 32]) -> Result<Self, InvalidKeyEncryptionKey> {
            Ok(Self {
                current: (valid_id(key_id)?, aead_key(key)?),
                previous: Vec::new(),
                random: SystemRandom::new(),
            })
        }

        /// Also opens records sealed under an older key (never seals with
        /// it).
        ///
        /// # Errors
        /// [`InvalidKeyEncryptionKey`] for a malformed id, or one already
        /// given.
        pub fn with_previous_key(mut self, key_id: &str, key: &[u8; 32]) -> Result<Self, InvalidKeyEncryptionKey> {
            let id = valid_id(key_id)?;
            if self.current.0 == id || self.previous.iter().any(|(p, _)| *p == id) {
                return Err(InvalidKeyEncryptionKey);
            }
            self.previous.push((id, aead_key(key)?));
            Ok(self)
        }

        /// 32 fresh random bytes from the operating system: a new
        /// key-encryption key (store it as carefully as a password
        /// database's master key).
        ///
        /// # Errors
        /// [`StoreError`] when the system's random source fails.
        pub fn generate_key() -> Result<zeroize::Zeroizing<[u8; 32]>, StoreError> {
            let mut key = zeroize::Zeroizing::new([0u8; 32]);
            SystemRandom::new()
                .fill(key.as_mut())
                .map_err(|_| StoreError::new("the system random source failed"))?;
            Ok(key)
        }

        /// The id of the key that seals.
        pub fn key_id(&self) -> &str {
            &self.current.0
        }

        fn key_for(&self, id: &[u8]) -> Option<&LessSafeKey> {
            std::iter::once(&self.current)
                .chain(&self.previous)
                .find(|(k, _)| k.as_bytes() == id)
                .map(|(_, key)| key)
        }
    }

    fn valid_id(id: &str) -> Result<String, InvalidKeyEncryptionKey> {
        let ok = (1..=MAX_ID).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(id.to_owned())
        } else {
            Err(InvalidKeyEncryptionKey)
        }
    }

    fn aead_key(key: &[u8; 32]) -> Result<LessSafeKey, InvalidKeyEncryptionKey> {
        UnboundKey::new(&AES_256_GCM, key)
            .map(LessSafeKey::new)
            .map_err(|_| InvalidKeyEncryptionKey)
    }

    fn aad(header: &[u8], context: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(DOMAIN.len() + header.len() + context.len());
        aad.extend_from_slice(DOMAIN);
        aad.extend_from_slice(header);
        aad.extend_from_slice(context);
        aad
    }

    /// A sealed record, split.
    struct Parsed<'a> {
        /// Magic, id length and id: authenticated.
        header: &'a [u8],
        id: &'a [u8],
        nonce: [u8; NONCE_LEN],
        ciphertext: &'a [u8],
    }

    /// Splits a sealed record.
    fn parse(sealed: &[u8]) -> Option<Parsed<'_>> {
        let rest = sealed.strip_prefix(MAGIC.as_slice())?;
        let (&len, rest) = rest.split_first()?;
        let len = usize::from(len);
        if !(1..=MAX_ID).contains(&len) || rest.len() < len + NONCE_LEN {
            return None;
        }
        let (id, rest) = rest.split_at(len);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        Some(Parsed {
            header: sealed.get(..MAGIC.len() + 1 + len)?,
            id,
            nonce: nonce.try_into().ok()?,
            ciphertext,
        })
    }

    #[async_trait]
    impl KeyEncryption for Aes256GcmKeyEncryption {
        async fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, StoreError> {
            let (id, key) = &self.current;
            let mut nonce = [0u8; NONCE_LEN];
            self.random
                .fill(&mut nonce)
                .map_err(|_| StoreError::new("sealing a signing key: the system random source failed"))?;
            let id_len = u8::try_from(id.len()).map_err(|_| StoreError::new("key-encryption key id too long"))?;
            let mut out = Vec::with_capacity(MAGIC.len() + 1 + id.len() + NONCE_LEN + plaintext.len() + 16);
            out.extend_from_slice(MAGIC);
            out.push(id_len);
            out.extend_from_slice(id.as_bytes());
            let header_len = out.len();
            out.extend_from_slice(&nonce);
            let aad = aad(out.get(..header_len).unwrap_or_default(), context);
            let mut in_out = zeroize::Zeroizing::new(plaintext.to_vec());
            key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut *in_out)
                .map_err(|_| StoreError::new("sealing a signing key failed"))?;
            out.extend_from_slice(&in_out);
            Ok(out)
        }

        async fn open(&self, sealed: &[u8], context: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, StoreError> {
            let refused = || {
                StoreError::new(
                    "a sealed signing key could not be opened (tampered, moved, or sealed under an unknown key-encryption key)",
                )
            };
            let Parsed {
                header,
                id,
                nonce,
                ciphertext,
            } = parse(sealed).ok_or_else(refused)?;
            let key = self.key_for(id).ok_or_else(refused)?;
            let mut in_out = zeroize::Zeroizing::new(ciphertext.to_vec());
            let plain_len = key
                .open_in_place(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad(header, context)),
                    &mut in_out,
                )
                .map_err(|_| refused())?
                .len();
            in_out.truncate(plain_len);
            Ok(in_out)
        }

        fn needs_reseal(&self, sealed: &[u8]) -> bool {
            parse(sealed).is_none_or(|p| p.id != self.current.0.as_bytes())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use futures_executor::block_on;

        #[test]
        fn seals_opens_and_refuses_every_alteration() {
            let kek = Aes256GcmKeyEncryption::new("k1", &[7; 32]).unwrap();
            let secret = b"0\x82 a private key's DER".to_vec();
            let sealed = block_on(kek.seal(&secret, b"proj kid ES256")).unwrap();
            assert!(
                !sealed.windows(8).any(|w| secret.windows(8).any(|s| s == w)),
                "no plaintext"
            );
            assert_eq!(&*block_on(kek.open(&sealed, b"proj kid ES256")).unwrap(), &secret);
            // Two seals of one key differ (random nonce).
            assert_ne!(block_on(kek.seal(&secret, b"proj kid ES256")).unwrap(), sealed);
            // Another context (record), a flipped bit anywhere, a truncation,
            // another key: refused.
            assert!(block_on(kek.open(&sealed, b"other kid ES256")).is_err());
            for i in 0..sealed.len() {
                let mut bad = sealed.clone();
                bad[i] ^= 1;
                assert!(block_on(kek.open(&bad, b"proj kid ES256")).is_err(), "byte {i}");
            }
            assert!(block_on(kek.open(&sealed[..sealed.len() - 1], b"proj kid ES256")).is_err());
            assert!(block_on(kek.open(&[], b"")).is_err());
            let other = Aes256GcmKeyEncryption::new("k1", &[8; 32]).unwrap();
            assert!(block_on(other.open(&sealed, b"proj kid ES256")).is_err());
            assert!(!kek.needs_reseal(&sealed));
            assert!(kek.needs_reseal(&secret), "plaintext needs sealing");
        }

        #[test]
        fn a_previous_key_opens_but_never_seals() {
            let old = Aes256GcmKeyEncryption::new("2025", &[1; 32]).unwrap();
            let sealed_old = block_on(old.seal(b"key", b"ctx")).unwrap();
            let new = Aes256GcmKeyEncryption::new("2026", &[2; 32])
                .unwrap()
                .with_previous_key("2025", &[1; 32])
                .unwrap();
            assert_eq!(&*block_on(new.open(&sealed_old, b"ctx")).unwrap(), b"key");
            assert!(new.needs_reseal(&sealed_old));
            let sealed_new = block_on(new.seal(b"key", b"ctx")).unwrap();
            assert!(!new.needs_reseal(&sealed_new));
            assert!(block_on(old.open(&sealed_new, b"ctx")).is_err());
            assert!(format!("{new:?}").contains("2026"));
            assert!(!format!("{new:?}").contains("[2, 2"));
        }

        #[test]
        fn key_ids_are_checked() {
            for bad in ["", "a b", "ключ", &"x".repeat(65)] {
                assert!(Aes256GcmKeyEncryption::new(bad, &[0; 32]).is_err(), "{bad:?}");
            }
            let k = Aes256GcmKeyEncryption::new("a", &[0; 32]).unwrap();
            assert!(k.with_previous_key("a", &[1; 32]).is_err(), "an id twice");
            let a = Aes256GcmKeyEncryption::generate_key().unwrap();
            let b = Aes256GcmKeyEncryption::generate_key().unwrap();
            assert_ne!(*a, *b);
        }
    }
}
