//! The resource server's token verifier over an in-process authorization
//! server.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::AuthorizationServer;
use crate::project::ProjectId;
use crate::resource_server::{ResourceServerError, TokenVerifier, VerifiedToken};

/// A [`TokenVerifier`] over an in-process [`AuthorizationServer`], for
/// hosts that run the authorization server and the MCP server together:
/// no network, no cache, revocation takes effect at once.
#[derive(Clone, Debug)]
pub struct LocalTokenVerifier {
    server: AuthorizationServer,
    project: ProjectId,
}

impl LocalTokenVerifier {
    /// Verifies tokens of `project` with `server`.
    pub const fn new(server: AuthorizationServer, project: ProjectId) -> Self {
        Self { server, project }
    }
}

#[async_trait]
impl TokenVerifier for LocalTokenVerifier {
    async fn verify(&self, token: &str, _now: OffsetDateTime) -> Result<VerifiedToken, ResourceServerError> {
        let r = self
            .server
            .introspect_token(&self.project, token)
            .await
            .map_err(|_| ResourceServerError::Unavailable)?;
        VerifiedToken::from_introspection(&r)
    }
}
