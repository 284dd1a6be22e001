//! Project administration and discovery: the dashboard's actions.

use super::EndpointError;
use crate::audit::AuditKind;
use crate::discovery::AuthorizationServerMetadata;
use crate::error::OAuthError;
use crate::project::{ProjectId, ProjectSettings, SettingChange, SettingsError};
use crate::store::StoreError;

use super::AuthorizationServer;

/// Why an admin action failed.
///
/// The admin calls (projects, initial access tokens, signing keys, client
/// and grant lifecycle) are the host's own API, not OAuth endpoints, so
/// this error has no mapping to an [`OAuthError`]: the host chooses the
/// response (the example server's admin API maps each variant to a JSON
/// error and a status, and logs a storage failure with
/// [`StoreError::log`]). It is structured like
/// [`EndpointError`]: match on the variant; a storage failure is
/// [`AdminError::Store`] with the [`StoreError`] kept (its own source
/// through [`std::error::Error::source`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// No such project.
    #[error("unknown project")]
    UnknownProject,
    /// The new settings break an invariant.
    #[error("invalid settings: {0}")]
    InvalidSettings(#[from] SettingsError),
    /// The settings kept changing under a concurrent update.
    #[error("the project was changed concurrently; retry")]
    Conflict,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The initial access token options are invalid.
    #[error("invalid initial access token options: {0}")]
    InvalidIatOptions(crate::dcr::IatError),
    /// No initial access token with this id in the project.
    #[error("unknown initial access token")]
    UnknownIat,
    /// No signing key with this id in the project.
    #[error("unknown signing key")]
    UnknownSigningKey,
    /// No registered client with this id in the project.
    #[error("unknown client")]
    UnknownClient,
    /// The user has no such grant (or it was revoked already).
    #[error("unknown grant")]
    UnknownGrant,
}

/// Compare-and-swap attempts before giving up with [`AdminError::Conflict`].
const CAS_ATTEMPTS: usize = 8;

impl AuthorizationServer {
    /// Creates or replaces a project after validating its settings.
    ///
    /// # Errors
    /// [`AdminError::InvalidSettings`] or [`AdminError::Store`].
    pub async fn put_project(&self, id: &ProjectId, mut settings: ProjectSettings) -> Result<(), AdminError> {
        // Checked as given (the older resource-name map included), then
        // with its names moved into the known resources.
        settings.validate()?;
        settings.fold_display_resource_names();
        settings.validate()?;
        self.projects.put(id, settings).await?;
        Ok(())
    }

    /// The settings of a project.
    ///
    /// # Errors
    /// [`AdminError::UnknownProject`] or [`AdminError::Store`].
    pub async fn project(&self, id: &ProjectId) -> Result<ProjectSettings, AdminError> {
        self.projects.get(id).await?.ok_or(AdminError::UnknownProject)
    }

    /// The dashboard's "MCP enabled" checkbox: applies the cascade
    /// atomically, records `project.mcp_enabled` / `project.mcp_disabled`
    /// (when anything changed) and returns the new settings and changes.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn set_mcp_enabled(
        &self,
        id: &ProjectId,
        enabled: bool,
    ) -> Result<(ProjectSettings, Vec<SettingChange>), AdminError> {
        let (settings, changes) = self
            .update_project(id, |current| Ok(current.set_mcp_enabled(enabled)))
            .await?;
        if !changes.is_empty() {
            let kind = if enabled {
                AuditKind::ProjectMcpEnabled {
                    changes: changes.clone(),
                }
            } else {
                AuditKind::ProjectMcpDisabled {
                    changes: changes.clone(),
                }
            };
            self.emit(id, kind).await;
        }
        Ok((settings, changes))
    }

    /// Replaces a project's settings through `edit`, atomically (retrying
    /// on concurrent changes), validating the result and recording
    /// `project.settings_updated`.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn edit_project(
        &self,
        id: &ProjectId,
        edit: impl Fn(ProjectSettings) -> ProjectSettings,
    ) -> Result<ProjectSettings, AdminError> {
        let (settings, ()) = self.update_project(id, |current| Ok((edit(current), ()))).await?;
        self.emit(id, AuditKind::ProjectSettingsUpdated {}).await;
        Ok(settings)
    }

    async fn update_project<T>(
        &self,
        id: &ProjectId,
        f: impl Fn(ProjectSettings) -> Result<(ProjectSettings, T), AdminError>,
    ) -> Result<(ProjectSettings, T), AdminError> {
        for _ in 0..CAS_ATTEMPTS {
            let current = self.project(id).await?;
            let (mut new, extra) = f(current.clone())?;
            new.validate()?;
            new.fold_display_resource_names();
            new.validate()?;
            if self.projects.compare_and_swap(id, &current, new.clone()).await? {
                return Ok((new, extra));
            }
        }
        Err(AdminError::Conflict)
    }

    /// The [RFC 8414] metadata of a project.
    ///
    /// # Errors
    /// `invalid_request` (rendered as 404 by the HTTP layer) for an unknown
    /// project; `server_error` when storage fails.
    ///
    /// [RFC 8414]: https://www.rfc-editor.org/rfc/rfc8414
    pub async fn metadata(&self, id: &ProjectId) -> Result<AuthorizationServerMetadata, EndpointError> {
        let settings = self.projects.get(id).await?.ok_or_else(OAuthError::unknown_project)?;
        let mut metadata = AuthorizationServerMetadata::build(self.issuer_for(&settings), &settings, &self.paths);
        // Advertise CIMD only when a fetcher can actually resolve documents.
        metadata.client_id_metadata_document_supported = self.cimd_advertised(&settings);
        Ok(metadata)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::error::ErrorCode;
    use crate::issuer::Issuer;
    use crate::project::DcrMode;
    use crate::server::FixedClock;
    use crate::store::memory::MemoryAuditLog;
    use time::macros::datetime;

    fn server() -> (AuthorizationServer, Arc<MemoryAuditLog>) {
        let audit = Arc::new(MemoryAuditLog::new());
        let s = AuthorizationServer::builder(Issuer::new("https://auth-api.authio.com").unwrap())
            .audit(audit.clone())
            .clock(Arc::new(FixedClock::new(datetime!(2026-11-26 12:00 UTC))))
            .metadata_fetcher(Arc::new(crate::server::cimd::test_support::RefusingFetcher))
            .build();
        (s, audit)
    }

    #[tokio::test]
    async fn mcp_switch_cascades_and_audits() {
        let (s, audit) = server();
        let p = ProjectId::new("proj_acme_prod").unwrap();
        s.put_project(&p, ProjectSettings::default()).await.unwrap();
        let m = s.metadata(&p).await.unwrap();
        assert!(m.registration_endpoint.is_none());
        assert!(!m.client_id_metadata_document_supported);

        let (settings, changes) = s.set_mcp_enabled(&p, true).await.unwrap();
        assert_eq!(settings.dcr_mode, DcrMode::InitialAccessToken);
        assert_eq!(changes.len(), 3);
        let m = s.metadata(&p).await.unwrap();
        assert_eq!(
            m.registration_endpoint.as_deref(),
            Some("https://auth-api.authio.com/oauth2/register")
        );
        assert!(m.client_id_metadata_document_supported);
        assert!(m.mcp_authorization_supported);

        // switching on again changes nothing and records nothing
        let (_, none) = s.set_mcp_enabled(&p, true).await.unwrap();
        assert!(none.is_empty());
        s.set_mcp_enabled(&p, false).await.unwrap();
        let names: Vec<_> = audit.recent(&p, 10).iter().map(|e| e.name()).collect();
        assert_eq!(names, ["project.mcp_enabled", "project.mcp_disabled"]);
        assert_eq!(audit.recent(&p, 10)[0].at, datetime!(2026-11-26 12:00 UTC));
    }

    #[tokio::test]
    async fn unknown_projects_and_invalid_settings() {
        let (s, _) = server();
        let p = ProjectId::new("nope").unwrap();
        assert!(matches!(
            s.set_mcp_enabled(&p, true).await,
            Err(AdminError::UnknownProject)
        ));
        assert_eq!(s.metadata(&p).await.unwrap_err().code(), ErrorCode::InvalidRequest);
        let bad = ProjectSettings {
            access_token_ttl: time::Duration::ZERO,
            ..Default::default()
        };
        assert!(matches!(
            s.put_project(&p, bad).await,
            Err(AdminError::InvalidSettings(_))
        ));
        s.put_project(&p, ProjectSettings::default()).await.unwrap();
        let r = s
            .edit_project(&p, |mut x| {
                x.authorize_endpoint_path = "no-slash".into();
                x
            })
            .await;
        assert!(matches!(
            r,
            Err(AdminError::InvalidSettings(SettingsError::AuthorizePath))
        ));
        assert_eq!(
            s.project(&p).await.unwrap(),
            ProjectSettings::default(),
            "a refused edit changes nothing"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_switches_never_lose_the_cascade() {
        let (s, _) = server();
        let p = ProjectId::new("p").unwrap();
        s.put_project(&p, ProjectSettings::default()).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..50 {
            let s = s.clone();
            let p = p.clone();
            tasks.push(tokio::spawn(async move {
                // Conflict is an acceptable answer (the caller retries); a lost update is not.
                loop {
                    let r = if i % 2 == 0 {
                        s.set_mcp_enabled(&p, true).await.map(|_| ())
                    } else {
                        s.edit_project(&p, |mut x| {
                            x.access_token_ttl = time::Duration::minutes(30);
                            x
                        })
                        .await
                        .map(|_| ())
                    };
                    match r {
                        Err(AdminError::Conflict) => tokio::task::yield_now().await,
                        other => return other,
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let settings = s.project(&p).await.unwrap();
        assert!(settings.mcp_enabled && settings.cimd_enabled);
        assert_eq!(settings.dcr_mode, DcrMode::InitialAccessToken);
        assert_eq!(settings.access_token_ttl, time::Duration::minutes(30));
    }
}
