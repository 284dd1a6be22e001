//! Signing keys per project and their rotation: the pure half.
//!
//! A project has, per algorithm, at most one `active` key (it signs), at
//! most one `next` key (published in the JWKS, signs nothing yet) and any
//! number of `retired` keys (sign nothing, still published until every
//! token they signed has expired). [`plan_rotation`] decides, from the
//! keys and `now`, what to do; the driver
//! ([`crate::server::AuthorizationServer::rotate_signing_keys`]) applies
//! the plan through a [`crate::store::KeyStore`].
//!
//! The life of a key, with the default [`SigningSettings`]:
//!
//! ```text
//!  created (next) --pre_publication--> active --rotation_period--> retired --token lifetime--> deleted
//!  published in the JWKS from creation ............................ until deletion
//! ```
//!
//! The next key is created `pre_publication` before the active key is due,
//! so a verifier that cached the JWKS (our JWKS responses allow caching for
//! [`JWKS_MAX_AGE_SECS`]) already knows it when it starts signing. The
//! first key of a project is activated at once: there is no token to
//! verify yet, and verifiers refetch on an unknown `kid`.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::jose::{JwkSet, PrivateKey, SigningAlgorithm};
use crate::project_id::ProjectId;

/// How long a verifier may cache a JWKS response (`Cache-Control:
/// max-age`): 5 minutes. [`SigningSettings::pre_publication`] must be
/// longer, so that every cache has seen a next key before it signs.
pub const JWKS_MAX_AGE_SECS: i64 = 300;

/// How long after its last token's expiry a retired key stays published:
/// the clock-skew leeway verifiers allow.
pub const RETIRED_KEY_GRACE: Duration = Duration::minutes(5);

/// A key id (`kid`): the algorithm and 16 random bytes in hex, e.g.
/// `es256-5f0c...`. Opaque to verifiers.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    /// A fresh id for a key of `alg`.
    pub fn from_random(alg: SigningAlgorithm, random: &[u8; 16]) -> Self {
        Self(format!(
            "{}-{}",
            alg.as_str().to_ascii_lowercase(),
            crate::grant::hex(random)
        ))
    }

    /// An id read back from storage.
    ///
    /// # Errors
    /// [`InvalidKeyId`] unless 1 to 128 printable ASCII characters.
    pub fn new(s: impl Into<String>) -> Result<Self, InvalidKeyId> {
        let s = s.into();
        if (1..=crate::jose::MAX_KID_LEN).contains(&s.len()) && s.chars().all(|c| c.is_ascii_graphic()) {
            Ok(Self(s))
        } else {
            Err(InvalidKeyId)
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KeyId").field(&self.0).finish()
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Not a valid key id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a key id must be 1 to 128 printable ASCII characters")]
pub struct InvalidKeyId;

/// Where a key is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Published, signs nothing yet.
    Next,
    /// Signs new tokens (one per project and algorithm).
    Active,
    /// Signs nothing; published until every token it signed expired.
    Retired,
}

/// A project's signing key. `Debug` never shows the private key.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SigningKey {
    /// The project.
    pub project: ProjectId,
    /// The key id.
    pub kid: KeyId,
    /// The state.
    pub state: KeyState,
    /// When it was created (and first published).
    pub created_at: OffsetDateTime,
    /// When it became active.
    pub activated_at: Option<OffsetDateTime>,
    /// When it was retired.
    pub retired_at: Option<OffsetDateTime>,
    /// For a retired key: published until then, deleted after.
    pub publish_until: Option<OffsetDateTime>,
    /// The private key.
    pub private_key: PrivateKey,
}

impl SigningKey {
    /// A new `next` key, created at `now`.
    pub fn new(project: ProjectId, kid: KeyId, private_key: PrivateKey, now: OffsetDateTime) -> Self {
        Self {
            project,
            kid,
            state: KeyState::Next,
            created_at: now,
            activated_at: None,
            retired_at: None,
            publish_until: None,
            private_key,
        }
    }

    /// The algorithm.
    pub const fn algorithm(&self) -> SigningAlgorithm {
        self.private_key.algorithm()
    }

    /// Whether the key belongs in the JWKS at `now`: next and active keys
    /// always, retired keys until `publish_until`.
    pub fn is_published(&self, now: OffsetDateTime) -> bool {
        match self.state {
            KeyState::Next | KeyState::Active => true,
            KeyState::Retired => self.publish_until.is_some_and(|t| now < t),
        }
    }
}

/// How a project signs and rotates keys. Durations serialize as seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SigningSettings {
    /// The algorithm of JWT access tokens (default ES256).
    pub access_token_algorithm: SigningAlgorithm,
    /// The algorithm of ID tokens (default RS256: OpenID Connect
    /// Discovery section 3 requires RS256 support, and clients that
    /// registered no `id_token_signed_response_alg` expect it).
    pub id_token_algorithm: SigningAlgorithm,
    /// How long a key signs before it is replaced (default 30 days).
    #[serde(with = "seconds")]
    pub rotation_period: Duration,
    /// How long a next key is published before it signs (default 1 day;
    /// at least twice [`JWKS_MAX_AGE_SECS`]).
    #[serde(with = "seconds")]
    pub pre_publication: Duration,
}

impl Default for SigningSettings {
    fn default() -> Self {
        Self {
            access_token_algorithm: SigningAlgorithm::Es256,
            id_token_algorithm: SigningAlgorithm::Rs256,
            rotation_period: Duration::days(30),
            pre_publication: Duration::days(1),
        }
    }
}

/// Signing settings that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigningSettingsError {
    /// The pre-publication window is shorter than two JWKS cache lifetimes.
    #[error("signing.pre_publication must be at least 10 minutes")]
    PrePublicationTooShort,
    /// The rotation period is not longer than the pre-publication window,
    /// or longer than 10 years.
    #[error("signing.rotation_period must be longer than signing.pre_publication and at most 10 years")]
    RotationPeriod,
}

impl SigningSettings {
    /// Checks the settings.
    ///
    /// # Errors
    /// A [`SigningSettingsError`].
    pub fn validate(&self) -> Result<(), SigningSettingsError> {
        if self.pre_publication < Duration::seconds(2 * JWKS_MAX_AGE_SECS) {
            return Err(SigningSettingsError::PrePublicationTooShort);
        }
        if self.rotation_period <= self.pre_publication || self.rotation_period > Duration::days(3653) {
            return Err(SigningSettingsError::RotationPeriod);
        }
        Ok(())
    }
}

/// One step of a rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotationAction {
    /// Create a `next` key of this algorithm; activate it at once when
    /// `activate` (the project has no active key of the algorithm).
    Create {
        /// The algorithm.
        algorithm: SigningAlgorithm,
        /// Activate right after creation.
        activate: bool,
    },
    /// Make this `next` key active; the active key of its algorithm
    /// retires, published until `retired_publish_until`.
    Activate {
        /// The key.
        kid: KeyId,
        /// When the retiring key may leave the JWKS.
        retired_publish_until: OffsetDateTime,
    },
    /// Retire this active key: the project no longer signs with its
    /// algorithm (the settings changed).
    Retire {
        /// The key.
        kid: KeyId,
        /// When it may leave the JWKS.
        publish_until: OffsetDateTime,
    },
    /// Delete retired keys whose `publish_until` has passed.
    DeleteExpired,
}

/// Decides the rotation steps for a project at `now`, for each algorithm
/// in `algorithms` (the ones the project signs with). `token_lifetime` is
/// the longest lifetime of a token signed now (a retired key stays
/// published that long, plus [`RETIRED_KEY_GRACE`]).
///
/// Per algorithm: no active key and no next key: create one and activate
/// it; no active key but a next key: activate it; an active key due within
/// `pre_publication` and no next key: create a next key; an active key due
/// and a next key published for at least `pre_publication`: activate the
/// next key. Active keys of algorithms no longer in use retire. Retired
/// keys past `publish_until` are deleted.
pub fn plan_rotation(
    keys: &[SigningKey],
    algorithms: &[SigningAlgorithm],
    settings: &SigningSettings,
    token_lifetime: Duration,
    now: OffsetDateTime,
) -> Vec<RotationAction> {
    let mut plan = Vec::new();
    let retired_publish_until = now + token_lifetime + RETIRED_KEY_GRACE;
    for &alg in algorithms {
        let of = |state| {
            keys.iter()
                .filter(move |k| k.algorithm() == alg && k.state == state)
                .max_by_key(|k| k.created_at)
        };
        let (active, next) = (of(KeyState::Active), of(KeyState::Next));
        match (active, next) {
            (None, None) => plan.push(RotationAction::Create {
                algorithm: alg,
                activate: true,
            }),
            (None, Some(n)) => plan.push(RotationAction::Activate {
                kid: n.kid.clone(),
                retired_publish_until,
            }),
            (Some(a), next) => {
                let since = a.activated_at.unwrap_or(a.created_at);
                let due = since.checked_add(settings.rotation_period).unwrap_or(since);
                let announce = due.checked_sub(settings.pre_publication).unwrap_or(due);
                match next {
                    None if now >= announce => plan.push(RotationAction::Create {
                        algorithm: alg,
                        activate: false,
                    }),
                    Some(n)
                        if now >= due
                            && n.created_at
                                .checked_add(settings.pre_publication)
                                .is_some_and(|ready| now >= ready) =>
                    {
                        plan.push(RotationAction::Activate {
                            kid: n.kid.clone(),
                            retired_publish_until,
                        });
                    }
                    _ => {}
                }
            }
        }
    }
    for k in keys {
        if k.state == KeyState::Active && !algorithms.contains(&k.algorithm()) {
            plan.push(RotationAction::Retire {
                kid: k.kid.clone(),
                publish_until: retired_publish_until,
            });
        }
    }
    if keys
        .iter()
        .any(|k| k.state == KeyState::Retired && !k.is_published(now))
    {
        plan.push(RotationAction::DeleteExpired);
    }
    plan
}

/// The active key of `alg`, if any.
pub fn active_key(keys: &[SigningKey], alg: SigningAlgorithm) -> Option<&SigningKey> {
    keys.iter()
        .filter(|k| k.state == KeyState::Active && k.algorithm() == alg)
        .max_by_key(|k| k.activated_at)
}

/// The public JWKS of a project at `now` ([RFC 7517 section 5]): every
/// published key, the active ones first.
///
/// [RFC 7517 section 5]: https://www.rfc-editor.org/rfc/rfc7517#section-5
pub fn jwks(keys: &[SigningKey], now: OffsetDateTime) -> JwkSet {
    let rank = |s: KeyState| match s {
        KeyState::Active => 0,
        KeyState::Next => 1,
        KeyState::Retired => 2,
    };
    let mut published: Vec<&SigningKey> = keys.iter().filter(|k| k.is_published(now)).collect();
    published.sort_by(|a, b| rank(a.state).cmp(&rank(b.state)).then(a.kid.cmp(&b.kid)));
    JwkSet {
        keys: published
            .into_iter()
            .map(|k| k.private_key.public_jwk(k.kid.as_str()))
            .collect(),
    }
}

mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.whole_seconds())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::seconds(i64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn key(kid: &str, state: KeyState, created: OffsetDateTime) -> SigningKey {
        let pk = PrivateKey::generate(SigningAlgorithm::EdDsa, &[3; 32]).unwrap();
        let mut k = SigningKey::new(ProjectId::new("p").unwrap(), KeyId::new(kid).unwrap(), pk, created);
        k.state = state;
        if state == KeyState::Active {
            k.activated_at = Some(created);
        }
        k
    }

    const ED: [SigningAlgorithm; 1] = [SigningAlgorithm::EdDsa];

    #[test]
    fn plan_follows_the_life_of_a_key() {
        let s = SigningSettings::default();
        let t0 = datetime!(2026-01-01 0:00 UTC);
        let ttl = Duration::hours(1);
        // Nothing yet: create and activate.
        assert_eq!(
            plan_rotation(&[], &ED, &s, ttl, t0),
            vec![RotationAction::Create {
                algorithm: SigningAlgorithm::EdDsa,
                activate: true
            }]
        );
        let a = key("a", KeyState::Active, t0);
        // Young active key: nothing.
        assert!(plan_rotation(std::slice::from_ref(&a), &ED, &s, ttl, t0 + Duration::days(28)).is_empty());
        // Within the pre-publication window: a next key.
        let t1 = t0 + Duration::days(29);
        assert_eq!(
            plan_rotation(std::slice::from_ref(&a), &ED, &s, ttl, t1),
            vec![RotationAction::Create {
                algorithm: SigningAlgorithm::EdDsa,
                activate: false
            }]
        );
        let n = key("b", KeyState::Next, t1);
        // Due, but the next key is not published long enough yet.
        let late = key("b", KeyState::Next, t0 + Duration::days(29) + Duration::hours(12));
        assert!(plan_rotation(&[a.clone(), late], &ED, &s, ttl, t0 + Duration::days(30)).is_empty());
        // Due and published a day: activate.
        let t2 = t0 + Duration::days(30);
        assert_eq!(
            plan_rotation(&[a.clone(), n.clone()], &ED, &s, ttl, t2),
            vec![RotationAction::Activate {
                kid: KeyId::new("b").unwrap(),
                retired_publish_until: t2 + ttl + RETIRED_KEY_GRACE
            }]
        );
        // A retired key past its publication: delete.
        let mut r = key("a", KeyState::Retired, t0);
        r.publish_until = Some(t2 + ttl);
        let active = key("b", KeyState::Active, t2);
        assert!(plan_rotation(&[r.clone(), active.clone()], &ED, &s, ttl, t2 + Duration::minutes(59)).is_empty());
        assert_eq!(
            plan_rotation(&[r, active], &ED, &s, ttl, t2 + ttl),
            vec![RotationAction::DeleteExpired]
        );
    }

    #[test]
    fn keys_of_an_algorithm_no_longer_used_retire() {
        let s = SigningSettings::default();
        let t0 = datetime!(2026-01-01 0:00 UTC);
        let ttl = Duration::minutes(10);
        let a = key("a", KeyState::Active, t0);
        let plan = plan_rotation(std::slice::from_ref(&a), &[SigningAlgorithm::Es256], &s, ttl, t0);
        assert_eq!(
            plan,
            vec![
                RotationAction::Create {
                    algorithm: SigningAlgorithm::Es256,
                    activate: true
                },
                RotationAction::Retire {
                    kid: KeyId::new("a").unwrap(),
                    publish_until: t0 + ttl + RETIRED_KEY_GRACE
                }
            ]
        );
        assert_eq!(plan_rotation(&[a], &[], &s, ttl, t0).len(), 1);
    }

    #[test]
    fn jwks_publishes_next_active_and_unexpired_retired_keys() {
        let t0 = datetime!(2026-01-01 0:00 UTC);
        let mut r = key("r", KeyState::Retired, t0);
        r.publish_until = Some(t0 + Duration::hours(1));
        let keys = [key("n", KeyState::Next, t0), key("a", KeyState::Active, t0), r];
        let kids = |at| -> Vec<String> {
            jwks(&keys, at)
                .keys
                .iter()
                .map(|k| k.kid().unwrap().to_owned())
                .collect()
        };
        assert_eq!(kids(t0), ["a", "n", "r"]);
        assert_eq!(kids(t0 + Duration::hours(1)), ["a", "n"]);
        let json = String::from_utf8(jwks(&keys, t0).to_json()).unwrap();
        assert!(!json.contains("\"d\""));
    }

    #[test]
    fn settings_are_checked_and_read_back() {
        assert_eq!(SigningSettings::default().validate(), Ok(()));
        let short = SigningSettings {
            pre_publication: Duration::minutes(1),
            ..SigningSettings::default()
        };
        assert_eq!(short.validate(), Err(SigningSettingsError::PrePublicationTooShort));
        let s: SigningSettings = serde_json::from_str(r#"{"access_token_algorithm":"EdDSA"}"#).unwrap();
        assert_eq!(s.access_token_algorithm, SigningAlgorithm::EdDsa);
        assert_eq!(s.id_token_algorithm, SigningAlgorithm::Rs256);
    }
}
