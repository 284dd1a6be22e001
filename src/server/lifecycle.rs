//! Client and grant lifecycle: the dashboard's list of registered clients
//! (show, disable, enable, delete) and a user's connected applications
//! (list, revoke one, revoke all for account deletion).
//!
//! Every decision is the store's: listing pages through its indexes,
//! revocation goes through [`crate::store::GrantStore::revoke_grants`],
//! whose batches carry the same guarantees as a single grant's revocation
//! (nothing inserted for a revoked grant afterwards is ever readable).

use crate::audit::AuditKind;
use crate::client::{Client, ClientId, RegisteredClientId};
use crate::grant::{GrantId, GrantSummary, Subject};
use crate::project::ProjectId;
use crate::store::{GrantSelector, Page, PageRequest};

use super::{AdminError, AuthorizationServer};

/// Grants revoked per store call (each call is one atomic step).
const REVOKE_BATCH: usize = 100;

impl AuthorizationServer {
    /// One page of a project's registered (DCR) clients, oldest first by
    /// registration time then id, disabled ones included
    /// ([`Client::disabled_at`]). Metadata-document clients are not
    /// registered and not listed. Pass the page's `next` cursor to
    /// [`PageRequest::after`] for the next page.
    ///
    /// # Errors
    /// [`AdminError::UnknownProject`] or [`AdminError::Store`].
    pub async fn list_clients(&self, project: &ProjectId, page: &PageRequest) -> Result<Page<Client>, AdminError> {
        self.project(project).await?;
        Ok(self.clients.list(project, page).await?)
    }

    /// One registered client of a project.
    ///
    /// # Errors
    /// [`AdminError::UnknownClient`] (also for a client of another
    /// project), [`AdminError::UnknownProject`] or [`AdminError::Store`].
    pub async fn client(&self, project: &ProjectId, id: &RegisteredClientId) -> Result<Client, AdminError> {
        self.project(project).await?;
        self.clients.get(project, id).await?.ok_or(AdminError::UnknownClient)
    }

    /// Disables a registered client: from now on it cannot start an
    /// authorization (an error page, never a redirect), authenticate at
    /// the token or revocation endpoint (`invalid_client`: no code
    /// exchange, no refresh), and its access and refresh tokens introspect
    /// as inactive (userinfo refuses them). Its grants are kept, so
    /// [`AuthorizationServer::enable_client`] restores everything. Records
    /// `oauth_client.disabled` when it was enabled; disabling a disabled
    /// client changes nothing.
    ///
    /// # Security
    /// Resource servers that verify JWT access tokens locally do not ask
    /// this server; they accept such a token until its `exp`, as after a
    /// revocation (keep JWT lifetimes short).
    ///
    /// # Errors
    /// [`AdminError::UnknownClient`], [`AdminError::UnknownProject`] or
    /// [`AdminError::Store`].
    pub async fn disable_client(&self, project: &ProjectId, id: &RegisteredClientId) -> Result<Client, AdminError> {
        let before = self.client(project, id).await?;
        let client = self
            .clients
            .set_disabled(project, id, Some(self.now()))
            .await?
            .ok_or(AdminError::UnknownClient)?;
        if !before.is_disabled() {
            self.emit(
                project,
                AuditKind::ClientDisabled {
                    client_id: id.as_str().to_owned(),
                },
            )
            .await;
        }
        Ok(client)
    }

    /// Enables a disabled client again; records `oauth_client.enabled`
    /// when it was disabled.
    ///
    /// # Errors
    /// [`AdminError::UnknownClient`], [`AdminError::UnknownProject`] or
    /// [`AdminError::Store`].
    pub async fn enable_client(&self, project: &ProjectId, id: &RegisteredClientId) -> Result<Client, AdminError> {
        let before = self.client(project, id).await?;
        let client = self
            .clients
            .set_disabled(project, id, None)
            .await?
            .ok_or(AdminError::UnknownClient)?;
        if before.is_disabled() {
            self.emit(
                project,
                AuditKind::ClientEnabled {
                    client_id: id.as_str().to_owned(),
                },
            )
            .await;
        }
        Ok(client)
    }

    /// Deletes a registered client and revokes every grant of it (its
    /// users' remembered consents for it are forgotten); returns how many
    /// grants went. Records `oauth_client.deleted`.
    ///
    /// The grants are revoked first, then the client deleted, then any
    /// grant that a request racing the deletion created is revoked too; a
    /// token minted in that window is refused anyway, because the tokens
    /// of an unknown client introspect as inactive and it can no longer
    /// authenticate. With a client cache
    /// ([`crate::store::CachedClientStore`]) another instance may still
    /// authenticate the client, and issue it new grants and tokens, for up
    /// to the cache's TTL; their introspection reads the client uncached,
    /// so those tokens introspect as inactive at once. A failure half-way leaves the client in place (the
    /// call can be repeated) or its remaining grants unusable.
    ///
    /// # Errors
    /// [`AdminError::UnknownClient`], [`AdminError::UnknownProject`] or
    /// [`AdminError::Store`].
    pub async fn delete_client(&self, project: &ProjectId, id: &RegisteredClientId) -> Result<usize, AdminError> {
        self.client(project, id).await?;
        let selector = GrantSelector::Client(ClientId::Registered(id.clone()));
        let mut revoked = self.revoke_all(project, &selector).await?;
        if !self.clients.delete(project, id).await? {
            return Err(AdminError::UnknownClient);
        }
        revoked.extend(self.revoke_all(project, &selector).await?);
        self.forget_consents(project, &revoked).await?;
        self.emit(
            project,
            AuditKind::ClientDeleted {
                client_id: id.as_str().to_owned(),
                grants_revoked: revoked.len(),
            },
        )
        .await;
        Ok(revoked.len())
    }

    /// One page of a user's grants ("connected apps"): client, scopes,
    /// resources, when granted and last used; oldest first. Only grants
    /// that may still have a live code or token are listed.
    ///
    /// # Errors
    /// [`AdminError::UnknownProject`] or [`AdminError::Store`].
    pub async fn user_grants(
        &self,
        project: &ProjectId,
        subject: &Subject,
        page: &PageRequest,
    ) -> Result<Page<GrantSummary>, AdminError> {
        self.project(project).await?;
        Ok(self
            .grants
            .grants_of_subject(project, subject, page, self.now())
            .await?)
    }

    /// Revokes one grant of a user (every code and token of it) and
    /// forgets what the user allowed its client, so the next sign-in asks
    /// again. Records `token.revoked` (reason `grant_revoked`).
    ///
    /// # Errors
    /// [`AdminError::UnknownGrant`] when the user has no such grant (also
    /// another user's grant, or one already revoked),
    /// [`AdminError::UnknownProject`] or [`AdminError::Store`].
    pub async fn revoke_user_grant(
        &self,
        project: &ProjectId,
        subject: &Subject,
        grant: &GrantId,
    ) -> Result<GrantSummary, AdminError> {
        self.project(project).await?;
        let selector = GrantSelector::Grant {
            subject: subject.clone(),
            grant: grant.clone(),
        };
        let revoked = self.grants.revoke_grants(project, &selector, 1, self.now()).await?;
        let summary = revoked.into_iter().next().ok_or(AdminError::UnknownGrant)?;
        self.forget_consents(project, std::slice::from_ref(&summary)).await?;
        self.emit(
            project,
            AuditKind::TokenRevoked {
                client_id: summary.grant.client_id.to_string(),
                grant_id: summary.grant.id.to_string(),
                reason: "grant_revoked".to_owned(),
            },
        )
        .await;
        Ok(summary)
    }

    /// Revokes every grant of a user (account deletion, "sign out
    /// everywhere") and forgets every consent they remembered, for any
    /// client (also clients whose grants expired or were revoked before);
    /// returns how many grants went. Records
    /// `token.revoked` per grant (reason `user_grants_revoked`) and
    /// `user.grants_revoked`.
    ///
    /// # Security
    /// A refresh racing this call never leaves a live token: each batch
    /// marks its grants revoked in one atomic step, and a rotation or a
    /// token stored for a revoked grant is dropped (see
    /// [`crate::store::GrantStore`]). A grant the user approves while this
    /// runs is a new approval and may survive: for account deletion, stop
    /// the user signing in first, then call this.
    ///
    /// # Errors
    /// [`AdminError::UnknownProject`] or [`AdminError::Store`] (what was
    /// revoked before the failure stays revoked; call again).
    pub async fn revoke_user_grants(&self, project: &ProjectId, subject: &Subject) -> Result<usize, AdminError> {
        self.project(project).await?;
        let revoked = self
            .revoke_all(project, &GrantSelector::Subject(subject.clone()))
            .await?;
        // Every remembered consent of the user, also for clients whose
        // grants are gone already (expired, revoked one by one).
        self.users.revoke_all_consents(project, subject).await?;
        for summary in &revoked {
            self.emit(
                project,
                AuditKind::TokenRevoked {
                    client_id: summary.grant.client_id.to_string(),
                    grant_id: summary.grant.id.to_string(),
                    reason: "user_grants_revoked".to_owned(),
                },
            )
            .await;
        }
        self.emit(
            project,
            AuditKind::UserGrantsRevoked {
                subject: subject.as_str().to_owned(),
                grants_revoked: revoked.len(),
            },
        )
        .await;
        Ok(revoked.len())
    }

    /// Revokes every grant `selector` selects, batch by batch.
    async fn revoke_all(&self, project: &ProjectId, selector: &GrantSelector) -> Result<Vec<GrantSummary>, AdminError> {
        let mut all = Vec::new();
        loop {
            let batch = self
                .grants
                .revoke_grants(project, selector, REVOKE_BATCH, self.now())
                .await?;
            let done = batch.len() < REVOKE_BATCH;
            all.extend(batch);
            if done {
                return Ok(all);
            }
        }
    }

    /// Forgets the remembered consent of each (user, client) of `revoked`.
    async fn forget_consents(&self, project: &ProjectId, revoked: &[GrantSummary]) -> Result<(), AdminError> {
        let mut seen = std::collections::HashSet::new();
        for s in revoked {
            if seen.insert((s.grant.subject.as_str(), s.grant.client_id.as_str())) {
                self.users
                    .revoke_consent(project, &s.grant.subject, s.grant.client_id.as_str())
                    .await?;
            }
        }
        Ok(())
    }
}
