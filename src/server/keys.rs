//! Signing keys in the driver: rotation with the injected clock and
//! randomness, the JWKS, and the active key for signing.

use crate::audit::AuditKind;
use crate::error::OAuthError;
use crate::jose::{JoseError, JwkSet, PrivateKey, SigningAlgorithm};
use crate::keys::{self, KeyId, RotationAction, SigningKey};
use crate::project::{AccessTokenFormat, ProjectId, ProjectSettings};
use crate::store::StoreError;

use super::AuthorizationServer;

/// What one rotation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RotationReport {
    /// Keys created (published).
    pub created: Vec<KeyId>,
    /// Keys activated.
    pub activated: Vec<KeyId>,
    /// Keys retired because their algorithm is no longer used.
    pub retired: Vec<KeyId>,
    /// How many retired keys were deleted.
    pub deleted: usize,
}

impl RotationReport {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.activated.is_empty() && self.retired.is_empty() && self.deleted == 0
    }
}

/// The algorithms a project signs with: its access-token algorithm when
/// access tokens are JWTs, its ID-token algorithm when it offers `openid`.
pub(crate) fn algorithms_in_use(settings: &ProjectSettings) -> Vec<SigningAlgorithm> {
    let mut algs = Vec::new();
    if settings.access_token_format == AccessTokenFormat::Jwt {
        algs.push(settings.signing.access_token_algorithm);
    }
    if settings.scopes_supported.contains("openid") && !algs.contains(&settings.signing.id_token_algorithm) {
        algs.push(settings.signing.id_token_algorithm);
    }
    // Client assertions at upstream providers sign with the access-token
    // algorithm.
    if settings.upstream.uses_private_key_jwt() && !algs.contains(&settings.signing.access_token_algorithm) {
        algs.push(settings.signing.access_token_algorithm);
    }
    algs
}

impl AuthorizationServer {
    /// Rotates a project's signing keys at the clock's `now`, following
    /// [`keys::plan_rotation`]: creates the first key (active at once) or a
    /// next key within the pre-publication window, activates a due next
    /// key (retiring the active one, still published until its tokens
    /// expired), and deletes retired keys past their publication. Records
    /// `signing_key.*` audit events. Idempotent: run it periodically (the
    /// example server does, with its purge); signing and the JWKS also run
    /// it when a project has no usable key.
    ///
    /// Rotations of one server are serialized; across servers the
    /// [`crate::store::KeyStore::activate`] contract keeps one active key
    /// per algorithm.
    ///
    /// # Errors
    /// `unknown_project`; `server_error` when storage or key generation
    /// fails (never with detail).
    pub async fn rotate_signing_keys(&self, project: &ProjectId) -> Result<RotationReport, OAuthError> {
        let settings = self.project_for_request(project).await?;
        self.rotate_with(project, &settings).await
    }

    pub(crate) async fn rotate_with(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
    ) -> Result<RotationReport, OAuthError> {
        let _serialized = self.rotation_lock.lock().await;
        let algs = algorithms_in_use(settings);
        let mut report = RotationReport::default();
        let now = self.clock.now();
        let keys = self.keys.keys(project).await?;
        for action in keys::plan_rotation(&keys, &algs, &settings.signing, settings.access_token_ttl, now) {
            match action {
                RotationAction::Create { algorithm, activate } => {
                    let key = self.generate_key(project, algorithm)?;
                    let kid = key.kid.clone();
                    if !self.keys.insert(key).await? {
                        return Err(StoreError::new("signing key id collision").into());
                    }
                    self.emit(
                        project,
                        AuditKind::SigningKeyCreated {
                            kid: kid.to_string(),
                            algorithm: algorithm.as_str().to_owned(),
                        },
                    )
                    .await;
                    report.created.push(kid.clone());
                    if activate {
                        let until = now + settings.access_token_ttl + keys::RETIRED_KEY_GRACE;
                        if self.keys.activate(project, &kid, now, until).await? {
                            self.emit(project, AuditKind::SigningKeyActivated { kid: kid.to_string() })
                                .await;
                            report.activated.push(kid);
                        }
                    }
                }
                RotationAction::Activate {
                    kid,
                    retired_publish_until,
                } => {
                    if self.keys.activate(project, &kid, now, retired_publish_until).await? {
                        self.emit(project, AuditKind::SigningKeyActivated { kid: kid.to_string() })
                            .await;
                        report.activated.push(kid);
                    }
                }
                RotationAction::Retire { kid, publish_until } => {
                    if self.keys.retire(project, &kid, now, publish_until).await? {
                        self.emit(project, AuditKind::SigningKeyRetired { kid: kid.to_string() })
                            .await;
                        report.retired.push(kid);
                    }
                }
                RotationAction::DeleteExpired => {
                    let count = self.keys.delete_expired(project, now).await?;
                    if count > 0 {
                        self.emit(project, AuditKind::SigningKeysDeleted { count }).await;
                    }
                    report.deleted += count;
                }
            }
        }
        Ok(report)
    }

    fn generate_key(&self, project: &ProjectId, alg: SigningAlgorithm) -> Result<SigningKey, OAuthError> {
        // A P-256 scalar is invalid with probability about 2^-128 per
        // draw; a few tries cannot all fail unless the random source is
        // broken.
        for _ in 0..4 {
            match PrivateKey::generate(alg, &self.random_array::<32>()) {
                Ok(pk) => {
                    let kid = KeyId::from_random(alg, &self.random_array::<16>());
                    return Ok(SigningKey::new(project.clone(), kid, pk, self.clock.now()));
                }
                Err(JoseError::Retry) => {}
                Err(_) => break,
            }
        }
        Err(OAuthError::server_error())
    }

    /// The JWKS of a project at the clock's `now`: next, active and
    /// not-yet-expired retired keys (RFC 7517 section 5), public members
    /// only. Creates the project's first keys when it signs with an
    /// algorithm that has none yet.
    ///
    /// # Errors
    /// `unknown_project`; `server_error` when storage fails.
    pub async fn jwks(&self, project: &ProjectId) -> Result<JwkSet, OAuthError> {
        let settings = self.project_for_request(project).await?;
        let mut keys = self.keys.keys(project).await?;
        let missing = algorithms_in_use(&settings)
            .into_iter()
            .any(|a| keys::active_key(&keys, a).is_none());
        if missing {
            self.rotate_with(project, &settings).await?;
            keys = self.keys.keys(project).await?;
        }
        Ok(keys::jwks(&keys, self.clock.now()))
    }

    /// The active key of `alg` for a project, rotating first when there is
    /// none or the active one is due.
    pub(crate) async fn signing_key(
        &self,
        project: &ProjectId,
        settings: &ProjectSettings,
        alg: SigningAlgorithm,
    ) -> Result<SigningKey, OAuthError> {
        let now = self.clock.now();
        let keys = self.keys.keys(project).await?;
        let algs = algorithms_in_use(settings);
        let plan = keys::plan_rotation(&keys, &algs, &settings.signing, settings.access_token_ttl, now);
        let keys = if plan.is_empty() && keys::active_key(&keys, alg).is_some() {
            keys
        } else {
            self.rotate_with(project, settings).await?;
            self.keys.keys(project).await?
        };
        keys::active_key(&keys, alg)
            .cloned()
            .ok_or_else(OAuthError::server_error)
    }
}
