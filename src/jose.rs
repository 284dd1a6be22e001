//! JOSE ([RFC 7515] JWS, [RFC 7517] JWK, [RFC 7519] JWT) behind one small
//! module: key generation, public JWKs, compact signing and verification.
//!
//! Every other module goes through this one, so the crates doing the
//! cryptography can change without touching the driver. Today: the
//! RustCrypto crates (`p256`, `ed25519-dalek`, `rsa`) generate keys, export
//! public JWKs and sign (keys parsed once and kept in [`PrivateKey`]; this
//! module only assembles the compact JWS of [RFC 7515 section 7.1]), and
//! `jsonwebtoken` with its pure-Rust RustCrypto backend verifies. No
//! signature algorithm is implemented here; a test checks our signatures
//! byte for byte against `jsonwebtoken`'s.
//!
//! Three algorithms exist, and only three: ES256 (the default), EdDSA
//! (Ed25519, [RFC 8037]) and RS256 (required for ID tokens by OpenID Connect
//! Discovery section 3). `none` and the HMAC algorithms are not
//! representable, so a token claiming them is refused before any key is
//! looked at ([RFC 8725 section 3.1]: no algorithm confusion).
//!
//! Verification here checks the structure, the header and the signature
//! only. Claims (`iss`, `aud`, `exp`, ...) are checked by the callers'
//! pure rule functions, which take `now` as an argument; nothing here reads
//! the clock.
//!
//! [RFC 7515]: https://www.rfc-editor.org/rfc/rfc7515
//! [RFC 7517]: https://www.rfc-editor.org/rfc/rfc7517
//! [RFC 7519]: https://www.rfc-editor.org/rfc/rfc7519
//! [RFC 7515 section 7.1]: https://www.rfc-editor.org/rfc/rfc7515#section-7.1
//! [RFC 8037]: https://www.rfc-editor.org/rfc/rfc8037
//! [RFC 8725 section 3.1]: https://www.rfc-editor.org/rfc/rfc8725#section-3.1

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The longest compact JWS accepted for verification (8 KiB): a bound on
/// the work an unauthenticated sender can cause.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The longest `kid` accepted or produced.
pub const MAX_KID_LEN: usize = 128;

/// The RSA modulus size of generated keys.
pub const RSA_BITS: usize = 2048;

/// A JWS signing algorithm this crate signs and verifies with ([RFC 7518
/// section 3.1], [RFC 8037 section 3.1]).
///
/// [RFC 7518 section 3.1]: https://www.rfc-editor.org/rfc/rfc7518#section-3.1
/// [RFC 8037 section 3.1]: https://www.rfc-editor.org/rfc/rfc8037#section-3.1
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SigningAlgorithm {
    /// ECDSA with P-256 and SHA-256 (the default).
    #[default]
    #[serde(rename = "ES256")]
    Es256,
    /// Ed25519 ([RFC 8037]).
    ///
    /// [RFC 8037]: https://www.rfc-editor.org/rfc/rfc8037
    #[serde(rename = "EdDSA")]
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (2048-bit keys).
    #[serde(rename = "RS256")]
    Rs256,
}

impl SigningAlgorithm {
    /// Every algorithm, in order of preference.
    pub const ALL: [Self; 3] = [Self::Es256, Self::EdDsa, Self::Rs256];

    /// The JOSE name (`ES256`, `EdDSA`, `RS256`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
        }
    }

    /// The algorithm with this JOSE name; `None` for every other name,
    /// including `none` and `HS256`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    const fn backend(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::Es256 => jsonwebtoken::Algorithm::ES256,
            Self::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            Self::Rs256 => jsonwebtoken::Algorithm::RS256,
        }
    }

    const fn kty(self) -> &'static str {
        match self {
            Self::Es256 => "EC",
            Self::EdDsa => "OKP",
            Self::Rs256 => "RSA",
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a JOSE operation failed. The variants are for logs and audit;
/// protocol answers map them to a generic `invalid_token` /
/// `invalid_client`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoseError {
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("the token is too large")]
    TooLarge,
    /// Not three base64url parts, or a part is not the JSON it must be.
    #[error("the token is malformed")]
    Malformed,
    /// The header names an algorithm that is not accepted here
    /// (including `none` and every HMAC algorithm).
    #[error("the token's algorithm is not accepted")]
    AlgorithmNotAccepted,
    /// The header has a `crit` member (no extension is understood).
    #[error("the token has critical header parameters")]
    CriticalHeader,
    /// The `typ` header is not the expected one.
    #[error("the token's type is wrong")]
    WrongType,
    /// No `kid`, or one that is not a short printable string.
    #[error("the token's key id is missing or malformed")]
    BadKeyId,
    /// No key with this `kid` and a matching algorithm.
    #[error("no key matches the token's key id")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the signature is invalid")]
    BadSignature,
    /// A key is unusable (bad encoding, wrong curve, private members).
    #[error("the key is invalid")]
    InvalidKey,
    /// Key generation drew an invalid scalar; retry with fresh randomness.
    #[error("key generation needs fresh randomness")]
    Retry,
}

/// A private signing key. `Debug` prints only the algorithm; there is no
/// `Display`, `Serialize` or `PartialEq`, and the key bytes are wiped on
/// drop.
///
/// # Security
/// Storage implementations read the DER form with
/// [`PrivateKey::expose_der`] to persist it (encrypt it at rest) and
/// rebuild the key with [`PrivateKey::from_der`]; nothing else should.
#[derive(Clone)]
pub struct PrivateKey {
    alg: SigningAlgorithm,
    /// PKCS#8 (ES256, EdDSA) or PKCS#1 (RS256) DER.
    der: zeroize::Zeroizing<Vec<u8>>,
    /// The public members of the JWK (`kty`, `crv`, `x`, `y`, `n`, `e`).
    public: Map<String, Value>,
    /// The parsed key, ready to sign (parsing an RSA key costs more than
    /// some signatures; it is done once, here).
    signer: std::sync::Arc<Signer>,
}

/// A parsed signing key of the RustCrypto crates.
enum Signer {
    Es256(p256::ecdsa::SigningKey),
    EdDsa(Box<ed25519_dalek::SigningKey>),
    Rs256(Box<rsa::pkcs1v15::SigningKey<sha2::Sha256>>),
}

impl Signer {
    /// The JWS signature ([RFC 7518 section 3.3] / 3.4, [RFC 8037 section 3.1]):
    /// `R || S` for ES256, the 64-byte signature for EdDSA, the PKCS#1 v1.5
    /// signature for RS256. All three are deterministic.
    ///
    /// [RFC 7518 section 3.3]: https://www.rfc-editor.org/rfc/rfc7518#section-3.3
    /// [RFC 8037 section 3.1]: https://www.rfc-editor.org/rfc/rfc8037#section-3.1
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, JoseError> {
        use rsa::signature::{SignatureEncoding as _, Signer as _};
        match self {
            Self::Es256(k) => {
                let sig: p256::ecdsa::Signature = k.try_sign(message).map_err(|_| JoseError::InvalidKey)?;
                Ok(sig.to_bytes().to_vec())
            }
            Self::EdDsa(k) => {
                let sig: ed25519_dalek::Signature = k.try_sign(message).map_err(|_| JoseError::InvalidKey)?;
                Ok(sig.to_bytes().to_vec())
            }
            Self::Rs256(k) => {
                let sig = k.try_sign(message).map_err(|_| JoseError::InvalidKey)?;
                Ok(sig.to_vec())
            }
        }
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("alg", &self.alg)
            .field("der", &"[redacted]")
            .finish()
    }
}

impl PrivateKey {
    /// Generates a key from 32 random bytes (the core draws no randomness
    /// itself). ES256 and EdDSA use the bytes as the secret scalar / seed;
    /// RS256 seeds a ChaCha generator with them for prime generation.
    ///
    /// # Errors
    /// [`JoseError::Retry`] in the negligible case that the bytes are not a
    /// valid P-256 scalar; [`JoseError::InvalidKey`] if encoding fails.
    pub fn generate(alg: SigningAlgorithm, random: &[u8; 32]) -> Result<Self, JoseError> {
        let der = match alg {
            SigningAlgorithm::Es256 => {
                use p256::pkcs8::EncodePrivateKey as _;
                let secret = p256::SecretKey::from_slice(random).map_err(|_| JoseError::Retry)?;
                secret
                    .to_pkcs8_der()
                    .map_err(|_| JoseError::InvalidKey)?
                    .as_bytes()
                    .to_vec()
            }
            SigningAlgorithm::EdDsa => {
                use ed25519_dalek::pkcs8::EncodePrivateKey as _;
                let key = ed25519_dalek::SigningKey::from_bytes(random);
                key.to_pkcs8_der()
                    .map_err(|_| JoseError::InvalidKey)?
                    .as_bytes()
                    .to_vec()
            }
            SigningAlgorithm::Rs256 => {
                use rand::SeedableRng as _;
                use rsa::pkcs1::EncodeRsaPrivateKey as _;
                let mut rng = rand::rngs::StdRng::from_seed(*random);
                let key = rsa::PrivateKey::new(&mut rng, RSA_BITS).map_err(|_| JoseError::InvalidKey)?;
                key.to_pkcs1_der()
                    .map_err(|_| JoseError::InvalidKey)?
                    .as_bytes()
                    .to_vec()
            }
        };
        Self::from_der(alg, der)
    }

    /// Rebuilds a key from its DER form (PKCS#8 for ES256 and EdDSA,
    /// PKCS#1 for RS256), as a store persisted it.
    ///
    /// # Errors
    /// [`JoseError::InvalidKey`].
    pub fn from_der(alg: SigningAlgorithm, der: Vec<u8>) -> Result<Self, JoseError> {
        let der = zeroize::Zeroizing::new(der);
        let mut public = Map::new();
        public.insert("kty".into(), alg.kty().into());
        let signer = match alg {
            SigningAlgorithm::Es256 => {
                use p256::elliptic_curve::sec1::ToSec1Point as _;
                use p256::pkcs8::DecodePrivateKey as _;
                let secret = p256::SecretKey::from_pkcs8_der(&der).map_err(|_| JoseError::InvalidKey)?;
                let point = secret.public_key().to_sec1_point(false);
                let (Some(x), Some(y)) = (point.x(), point.y()) else {
                    return Err(JoseError::InvalidKey);
                };
                public.insert("crv".into(), "P-256".into());
                public.insert("x".into(), b64(x).into());
                public.insert("y".into(), b64(y).into());
                Signer::Es256(p256::ecdsa::SigningKey::from(&secret))
            }
            SigningAlgorithm::EdDsa => {
                use ed25519_dalek::pkcs8::DecodePrivateKey as _;
                let key = ed25519_dalek::SigningKey::from_pkcs8_der(&der).map_err(|_| JoseError::InvalidKey)?;
                public.insert("crv".into(), "Ed25519".into());
                public.insert("x".into(), b64(key.verifying_key().as_bytes()).into());
                Signer::EdDsa(Box::new(key))
            }
            SigningAlgorithm::Rs256 => {
                use rsa::pkcs1::DecodeRsaPrivateKey as _;
                use rsa::traits::PublicKeyParts as _;
                let key = rsa::PrivateKey::from_pkcs1_der(&der).map_err(|_| JoseError::InvalidKey)?;
                public.insert("n".into(), b64(&key.n_bytes()).into());
                public.insert("e".into(), b64(&key.e_bytes()).into());
                Signer::Rs256(Box::new(rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key)))
            }
        };
        Ok(Self {
            alg,
            der,
            public,
            signer: std::sync::Arc::new(signer),
        })
    }

    /// The algorithm.
    pub const fn algorithm(&self) -> SigningAlgorithm {
        self.alg
    }

    /// The DER form, for a store to persist.
    ///
    /// # Security
    /// This is the private key. Persist it encrypted; never log it.
    pub fn expose_der(&self) -> &[u8] {
        &self.der
    }

    /// The public JWK of this key ([RFC 7517 section 4]), with `kid`,
    /// `use: sig` and `alg`.
    ///
    /// [RFC 7517 section 4]: https://www.rfc-editor.org/rfc/rfc7517#section-4
    pub fn public_jwk(&self, kid: &str) -> PublicJwk {
        let mut m = self.public.clone();
        m.insert("kid".into(), kid.into());
        m.insert("use".into(), "sig".into());
        m.insert("alg".into(), self.alg.as_str().into());
        PublicJwk(m)
    }

    /// The key for `jsonwebtoken` (tests cross-check our signatures
    /// against it).
    #[cfg(test)]
    fn encoding_key(&self) -> jsonwebtoken::EncodingKey {
        match self.alg {
            SigningAlgorithm::Es256 => jsonwebtoken::EncodingKey::from_ec_der(&self.der),
            SigningAlgorithm::EdDsa => jsonwebtoken::EncodingKey::from_ed_der(&self.der),
            SigningAlgorithm::Rs256 => jsonwebtoken::EncodingKey::from_rsa_der(&self.der),
        }
    }
}

/// The members a public JWK must never carry ([RFC 7518 section 6.2.2],
/// [6.3.2], [6.4.1]; [RFC 8037 section 2]).
///
/// [RFC 7518 section 6.2.2]: https://www.rfc-editor.org/rfc/rfc7518#section-6.2.2
/// [6.3.2]: https://www.rfc-editor.org/rfc/rfc7518#section-6.3.2
/// [6.4.1]: https://www.rfc-editor.org/rfc/rfc7518#section-6.4.1
/// [RFC 8037 section 2]: https://www.rfc-editor.org/rfc/rfc8037#section-2
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A public JSON Web Key ([RFC 7517]): an EC P-256, OKP Ed25519 or RSA key,
/// never a private or symmetric one. Unknown members are kept.
///
/// [RFC 7517]: https://www.rfc-editor.org/rfc/rfc7517
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PublicJwk(Map<String, Value>);

impl PublicJwk {
    /// Validates a JWK given as a JSON object.
    ///
    /// # Errors
    /// [`JoseError::InvalidKey`] for a private or symmetric key, an
    /// unsupported `kty`/`crv`, or missing members.
    pub fn from_json(value: Value) -> Result<Self, JoseError> {
        let Value::Object(m) = value else {
            return Err(JoseError::InvalidKey);
        };
        if PRIVATE_MEMBERS.iter().any(|k| m.contains_key(*k)) {
            return Err(JoseError::InvalidKey);
        }
        let s = |k: &str| m.get(k).and_then(Value::as_str);
        let ok = match s("kty") {
            Some("EC") => s("crv") == Some("P-256") && s("x").is_some() && s("y").is_some(),
            Some("OKP") => s("crv") == Some("Ed25519") && s("x").is_some(),
            Some("RSA") => s("n").is_some() && s("e").is_some(),
            _ => false,
        };
        if !ok || m.get("kid").is_some_and(|k| !k.is_string()) {
            return Err(JoseError::InvalidKey);
        }
        Ok(Self(m))
    }

    /// The `kid`, if any.
    pub fn kid(&self) -> Option<&str> {
        self.0.get("kid").and_then(Value::as_str)
    }

    /// The `alg`, if any.
    pub fn alg(&self) -> Option<&str> {
        self.0.get("alg").and_then(Value::as_str)
    }

    /// Whether this key may verify `alg`: its `kty` (and curve) fit, its
    /// `alg` (if any) is `alg`, and its `use` (if any) is `sig`.
    pub fn fits(&self, alg: SigningAlgorithm) -> bool {
        let s = |k: &str| self.0.get(k).and_then(Value::as_str);
        s("kty") == Some(alg.kty())
            && self.alg().is_none_or(|a| a == alg.as_str())
            && s("use").is_none_or(|u| u == "sig")
    }

    /// The JSON object.
    pub fn as_json(&self) -> &Map<String, Value> {
        &self.0
    }

    fn decoding_key(&self, alg: SigningAlgorithm) -> Result<jsonwebtoken::DecodingKey, JoseError> {
        let s = |k: &str| self.0.get(k).and_then(Value::as_str).ok_or(JoseError::InvalidKey);
        let key = match alg {
            SigningAlgorithm::Es256 => jsonwebtoken::DecodingKey::from_ec_components(s("x")?, s("y")?),
            SigningAlgorithm::EdDsa => jsonwebtoken::DecodingKey::from_ed_components(s("x")?),
            SigningAlgorithm::Rs256 => {
                let n = URL_SAFE_NO_PAD.decode(s("n")?).map_err(|_| JoseError::InvalidKey)?;
                // RFC 7518 section 3.3: keys of 2048 bits or more.
                let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
                if bits < RSA_BITS {
                    return Err(JoseError::InvalidKey);
                }
                jsonwebtoken::DecodingKey::from_rsa_components(s("n")?, s("e")?)
            }
        };
        key.map_err(|_| JoseError::InvalidKey)
    }
}

impl<'de> Deserialize<'de> for PublicJwk {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_json(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A JWK Set ([RFC 7517 section 5]) of public keys.
///
/// Deserializing skips keys this crate cannot use (other curves, `oct`
/// keys) rather than failing the whole set, as [RFC 7517 section 5] asks,
/// but a set with a private member anywhere is refused.
///
/// [RFC 7517 section 5]: https://www.rfc-editor.org/rfc/rfc7517#section-5
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<PublicJwk>,
}

impl JwkSet {
    /// Parses a JWK Set document.
    ///
    /// # Errors
    /// [`JoseError::Malformed`] when it is not a JSON object with a `keys`
    /// array; [`JoseError::InvalidKey`] when any key carries a private
    /// member.
    pub fn from_json(value: Value) -> Result<Self, JoseError> {
        let Some(Value::Array(keys)) = value.get("keys") else {
            return Err(JoseError::Malformed);
        };
        let mut out = Vec::new();
        for k in keys {
            if let Value::Object(m) = k
                && PRIVATE_MEMBERS.iter().any(|p| m.contains_key(*p))
            {
                return Err(JoseError::InvalidKey);
            }
            if let Ok(jwk) = PublicJwk::from_json(k.clone()) {
                out.push(jwk);
            }
        }
        Ok(Self { keys: out })
    }

    /// Whether a key with this `kid` is in the set.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid() == Some(kid))
    }

    /// The JSON document.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl<'de> Deserialize<'de> for JwkSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_json(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Signs `claims` as a compact JWS with the header `{alg, typ, kid}`.
///
/// # Errors
/// [`JoseError::InvalidKey`] when the key cannot sign.
pub(crate) fn sign<T: Serialize>(key: &PrivateKey, kid: &str, typ: &str, claims: &T) -> Result<String, JoseError> {
    #[derive(Serialize)]
    struct Header<'a> {
        alg: &'a str,
        typ: &'a str,
        kid: &'a str,
    }
    let header = serde_json::to_vec(&Header {
        alg: key.alg.as_str(),
        typ,
        kid,
    })
    .map_err(|_| JoseError::Malformed)?;
    let payload = serde_json::to_vec(claims).map_err(|_| JoseError::Malformed)?;
    // RFC 7515 section 7.1: BASE64URL(header) "." BASE64URL(payload) "."
    // BASE64URL(signature over the first two parts).
    let mut jws = b64(&header);
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut jws);
    let signature = key.signer.sign(jws.as_bytes())?;
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut jws);
    Ok(jws)
}

/// What a verification accepts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Expect<'a> {
    /// The algorithms accepted (never empty in practice; empty refuses all).
    pub(crate) algorithms: &'a [SigningAlgorithm],
    /// The required `typ` (compared case-insensitively, an
    /// `application/` prefix allowed, [RFC 7515 section 4.1.9]); `None`:
    /// any or none.
    ///
    /// [RFC 7515 section 4.1.9]: https://www.rfc-editor.org/rfc/rfc7515#section-4.1.9
    pub(crate) typ: Option<&'a str>,
}

/// The protected header of a verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VerifiedHeader {
    pub(crate) alg: SigningAlgorithm,
    pub(crate) kid: String,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
    #[serde(default)]
    jku: Option<Value>,
    #[serde(default)]
    jwk: Option<Value>,
    #[serde(default)]
    x5u: Option<Value>,
}

/// Verifies a compact JWS against a key set and returns its header and
/// claims. Checks, in order: size, shape, header (`alg` accepted, no
/// `crit`, no `jku`/`jwk`/`x5u` key references, `typ`, `kid`), the key
/// (found by exact `kid` match and fitting the algorithm), the signature,
/// and that the payload is a JSON object. The `kid` is only ever compared
/// with the set's ids: it is never used as a path, URL or query.
///
/// # Errors
/// A [`JoseError`].
pub(crate) fn verify(
    token: &str,
    keys: &JwkSet,
    expect: Expect<'_>,
) -> Result<(VerifiedHeader, Map<String, Value>), JoseError> {
    let (alg, kid, parts) = parse_header(token, expect)?;
    let key = keys
        .keys
        .iter()
        .find(|k| k.kid() == Some(kid.as_str()) && k.fits(alg))
        .ok_or(JoseError::UnknownKey)?;
    check_signature(parts.signing_input, parts.signature, key, alg)?;
    let claims = decode_json(parts.payload)?;
    Ok((VerifiedHeader { alg, kid }, claims))
}

/// The header of a token, checked as [`verify`] does, before any key is
/// looked up: lets a caller decide whether to refetch keys for an unknown
/// `kid`.
///
/// # Errors
/// A [`JoseError`].
pub(crate) fn peek(token: &str, expect: Expect<'_>) -> Result<VerifiedHeader, JoseError> {
    let (alg, kid, _) = parse_header(token, expect)?;
    Ok(VerifiedHeader { alg, kid })
}

/// The claims of a token, decoded WITHOUT verification: only for choosing
/// which keys to verify with (the `iss` of a client assertion), never for
/// a decision.
pub(crate) fn unverified_claims(token: &str) -> Result<Map<String, Value>, JoseError> {
    let parts = split(token)?;
    decode_json(parts.payload)
}

struct Parts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    signing_input: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, JoseError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JoseError::TooLarge);
    }
    let mut it = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(JoseError::Malformed);
    };
    let signing_input = token
        .get(..header.len() + 1 + payload.len())
        .ok_or(JoseError::Malformed)?;
    if signature.is_empty() {
        return Err(JoseError::Malformed);
    }
    Ok(Parts {
        header,
        payload,
        signature,
        signing_input,
    })
}

fn parse_header<'a>(token: &'a str, expect: Expect<'_>) -> Result<(SigningAlgorithm, String, Parts<'a>), JoseError> {
    let parts = split(token)?;
    let raw = URL_SAFE_NO_PAD.decode(parts.header).map_err(|_| JoseError::Malformed)?;
    let header: RawHeader = serde_json::from_slice(&raw).map_err(|_| JoseError::Malformed)?;
    let alg = SigningAlgorithm::from_name(&header.alg)
        .filter(|a| expect.algorithms.contains(a))
        .ok_or(JoseError::AlgorithmNotAccepted)?;
    if header.crit.is_some() {
        return Err(JoseError::CriticalHeader);
    }
    if header.jku.is_some() || header.jwk.is_some() || header.x5u.is_some() {
        // Keys named by the token itself are never trusted.
        return Err(JoseError::BadKeyId);
    }
    if let Some(want) = expect.typ {
        let got = header.typ.as_deref().unwrap_or_default();
        let got = got
            .get(..12)
            .filter(|p| p.eq_ignore_ascii_case("application/"))
            .map_or(got, |_| got.get(12..).unwrap_or_default());
        if !got.eq_ignore_ascii_case(want) {
            return Err(JoseError::WrongType);
        }
    }
    let kid = header
        .kid
        .filter(|k| !k.is_empty() && k.len() <= MAX_KID_LEN && k.chars().all(|c| c.is_ascii_graphic()))
        .ok_or(JoseError::BadKeyId)?;
    Ok((alg, kid, parts))
}

/// Checks a signature over `signing_input` with one public key.
fn check_signature(
    signing_input: &str,
    signature: &str,
    key: &PublicJwk,
    alg: SigningAlgorithm,
) -> Result<(), JoseError> {
    let decoding = key.decoding_key(alg)?;
    match jsonwebtoken::crypto::verify(signature, signing_input.as_bytes(), &decoding, alg.backend()) {
        Ok(true) => Ok(()),
        _ => Err(JoseError::BadSignature),
    }
}

fn decode_json(part: &str) -> Result<Map<String, Value>, JoseError> {
    let raw = URL_SAFE_NO_PAD.decode(part).map_err(|_| JoseError::Malformed)?;
    match serde_json::from_slice(&raw) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(JoseError::Malformed),
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The left-most half of the SHA-256 hash of `value`, base64url: the
/// `at_hash` of an ID token signed with a SHA-256 algorithm (OpenID
/// Connect Core section 3.1.3.6; every algorithm here uses SHA-256).
pub(crate) fn half_sha256(value: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(value.as_bytes());
    b64(digest.get(..16).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(alg: SigningAlgorithm) -> PrivateKey {
        let mut r = [7u8; 32];
        loop {
            match PrivateKey::generate(alg, &r) {
                Ok(k) => return k,
                Err(JoseError::Retry) => r[0] = r[0].wrapping_add(1),
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn set(k: &PrivateKey, kid: &str) -> JwkSet {
        JwkSet {
            keys: vec![k.public_jwk(kid)],
        }
    }

    const ALL: Expect<'static> = Expect {
        algorithms: &SigningAlgorithm::ALL,
        typ: Some("at+jwt"),
    };

    #[test]
    fn sign_and_verify_every_algorithm() {
        for alg in [SigningAlgorithm::Es256, SigningAlgorithm::EdDsa] {
            let k = key(alg);
            let t = sign(&k, "k1", "at+jwt", &serde_json::json!({"sub": "u"})).unwrap();
            let (h, c) = verify(&t, &set(&k, "k1"), ALL).unwrap();
            assert_eq!(h.alg, alg);
            assert_eq!(c["sub"], "u");
            // Another key with the same kid does not verify.
            let other = PrivateKey::generate(alg, &[9u8; 32]).unwrap();
            assert_eq!(verify(&t, &set(&other, "k1"), ALL), Err(JoseError::BadSignature));
            // A key of the right kid but another algorithm is not used.
            let only_es = Expect {
                algorithms: &[SigningAlgorithm::Rs256],
                typ: None,
            };
            assert_eq!(
                verify(&t, &set(&k, "k1"), only_es),
                Err(JoseError::AlgorithmNotAccepted)
            );
        }
    }

    /// Our signatures equal `jsonwebtoken`'s for the same input (all three
    /// algorithms are deterministic), and `jsonwebtoken` verifies our
    /// tokens.
    #[test]
    fn signatures_match_jsonwebtoken() {
        for alg in SigningAlgorithm::ALL {
            let k = key(alg);
            let t = sign(&k, "k1", "at+jwt", &serde_json::json!({"sub": "u", "n": 1})).unwrap();
            let (input, sig) = t.rsplit_once('.').unwrap();
            let theirs = jsonwebtoken::crypto::sign(input.as_bytes(), &k.encoding_key(), alg.backend()).unwrap();
            assert_eq!(sig, theirs, "{alg}");
            let header = jsonwebtoken::decode_header(&t).unwrap();
            assert_eq!(header.kid.as_deref(), Some("k1"));
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
            assert_eq!(header.alg, alg.backend());
        }
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let k = key(SigningAlgorithm::EdDsa);
        let d = format!("{k:?}");
        assert!(!d.contains(&b64(k.expose_der())));
        assert!(d.contains("redacted"));
        let jwk = serde_json::to_value(k.public_jwk("a")).unwrap();
        assert!(jwk.get("d").is_none());
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["alg"], "EdDSA");
    }

    #[test]
    fn der_round_trip() {
        let k = key(SigningAlgorithm::Es256);
        let again = PrivateKey::from_der(SigningAlgorithm::Es256, k.expose_der().to_vec()).unwrap();
        assert_eq!(k.public_jwk("x"), again.public_jwk("x"));
        assert!(PrivateKey::from_der(SigningAlgorithm::Es256, vec![1, 2, 3]).is_err());
    }

    /// [RFC 8037] appendix A.1-A.4: Ed25519 key, public key, and the JWS of
    /// "Example of Ed25519 signing".
    ///
    /// [RFC 8037]: https://www.rfc-editor.org/rfc/rfc8037
    #[test]
    fn rfc8037_ed25519_vector() {
        let d = URL_SAFE_NO_PAD
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap();
        let seed: [u8; 32] = d.try_into().unwrap();
        let k = PrivateKey::generate(SigningAlgorithm::EdDsa, &seed).unwrap();
        let jwk = k.public_jwk("a");
        assert_eq!(jwk.as_json()["x"], "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
        // A.4: Ed25519 is deterministic, so the signature is known.
        let input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let sig = "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
        let ours =
            jsonwebtoken::crypto::sign(input.as_bytes(), &k.encoding_key(), jsonwebtoken::Algorithm::EdDSA).unwrap();
        assert_eq!(ours, sig);
        // A.5: verification, and a flipped signature fails.
        check_signature(input, sig, &jwk, SigningAlgorithm::EdDsa).unwrap();
        let bad = format!("{}A", sig.get(..sig.len() - 1).unwrap());
        assert!(check_signature(input, &bad, &jwk, SigningAlgorithm::EdDsa).is_err());
    }

    /// [RFC 7515] appendix A.3: the ES256 example verifies with its key.
    ///
    /// [RFC 7515]: https://www.rfc-editor.org/rfc/rfc7515
    #[test]
    fn rfc7515_a3_es256_verification() {
        let jwk = PublicJwk::from_json(serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
        }))
        .unwrap();
        let input = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        let sig = "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
        check_signature(input, sig, &jwk, SigningAlgorithm::Es256).unwrap();
        let tampered = input.replace("eyJpc3MiOiJqb2Ui", "eyJpc3MiOiJqb2Ij");
        assert_eq!(
            check_signature(&tampered, sig, &jwk, SigningAlgorithm::Es256),
            Err(JoseError::BadSignature)
        );
    }

    #[test]
    fn hostile_headers_are_refused() {
        let k = key(SigningAlgorithm::Es256);
        let keys = set(&k, "k1");
        let good = sign(&k, "k1", "at+jwt", &serde_json::json!({"sub": "u"})).unwrap();
        let mut it = good.split('.');
        let (_, payload, sig) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
        let with_header = |h: serde_json::Value| format!("{}.{payload}.{sig}", b64(h.to_string().as_bytes()));
        let cases = [
            (
                serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": "k1"}),
                JoseError::AlgorithmNotAccepted,
            ),
            (
                serde_json::json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"}),
                JoseError::AlgorithmNotAccepted,
            ),
            (
                serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "k1"}),
                JoseError::WrongType,
            ),
            (
                serde_json::json!({"alg": "ES256", "typ": "at+jwt"}),
                JoseError::BadKeyId,
            ),
            (
                serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": "../../etc/passwd"}),
                JoseError::UnknownKey,
            ),
            (
                serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1\n"}),
                JoseError::BadKeyId,
            ),
            (
                serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1", "crit": ["exp"]}),
                JoseError::CriticalHeader,
            ),
            (
                serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1", "jku": "https://evil.example/jwks"}),
                JoseError::BadKeyId,
            ),
        ];
        for (h, want) in cases {
            assert_eq!(
                verify(&with_header(h.clone()), &keys, ALL).map(|_| ()),
                Err(want),
                "{h}"
            );
        }
        // `application/at+jwt` is the same type.
        let app = with_header(serde_json::json!({"alg": "ES256", "typ": "application/AT+JWT", "kid": "k1"}));
        assert_eq!(verify(&app, &keys, ALL).map(|_| ()), Err(JoseError::BadSignature));
        assert_eq!(verify("a.b", &keys, ALL).map(|_| ()), Err(JoseError::Malformed));
        assert_eq!(verify("a.b.c.d", &keys, ALL).map(|_| ()), Err(JoseError::Malformed));
        let huge = format!("{good}{}", "A".repeat(MAX_TOKEN_LEN));
        assert_eq!(verify(&huge, &keys, ALL).map(|_| ()), Err(JoseError::TooLarge));
    }

    #[test]
    fn private_and_symmetric_jwks_are_refused() {
        assert!(PublicJwk::from_json(serde_json::json!({"kty": "oct", "k": "c2VjcmV0"})).is_err());
        assert!(
            PublicJwk::from_json(serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "AA", "d": "AA"})).is_err()
        );
        let set = JwkSet::from_json(serde_json::json!({"keys": [
            {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AA", "kid": "a"}
        ]}))
        .unwrap();
        assert_eq!(set.keys.len(), 1);
        assert!(
            JwkSet::from_json(serde_json::json!({"keys": [{"kty": "RSA", "n": "AA", "e": "AQAB", "d": "AA"}]}))
                .is_err()
        );
        // Every private member alone, on an otherwise public RSA key: a key
        // and a set carrying it are refused.
        for member in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            let mut key = serde_json::json!({"kty": "RSA", "n": "AA", "e": "AQAB"});
            if let Some(o) = key.as_object_mut() {
                o.insert(member.to_owned(), serde_json::json!("AA"));
            }
            assert!(PublicJwk::from_json(key.clone()).is_err(), "{member}");
            assert!(
                JwkSet::from_json(serde_json::json!({ "keys": [key] })).is_err(),
                "{member}"
            );
        }
    }

    #[test]
    fn at_hash_is_the_left_half_of_sha256() {
        // SHA-256("abc") = ba7816bf 8f01cfea 414140de 5dae2223 b00361a3 ... (FIPS 180-2
        // appendix B.1); its left 128 bits, base64url without padding.
        assert_eq!(half_sha256("abc"), "ungWv48Bz-pBQUDeXa4iIw");
    }
}
