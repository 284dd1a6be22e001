//! Client authentication at the token endpoint for registered clients.

use crate::client::{Client, RegisteredClientId};
use crate::client_auth::{ClientAuthError, ClientCredentials, PresentedMethod};
use crate::error::OAuthError;
use crate::project::ProjectId;

use super::AuthorizationServer;

impl AuthorizationServer {
    /// Authenticates a client registered through DCR (`client_<24 hex>`)
    /// with the credentials of a token request (parse them with
    /// [`ClientCredentials::parse`]; route `https://` client ids, see
    /// [`ClientCredentials::client_id`], to the metadata-document path
    /// instead).
    ///
    /// Confidential clients must present their secret by their registered
    /// method (`client_secret_basic` or `client_secret_post`); it is
    /// checked in constant time against the stored hash and must not have
    /// expired. Public clients authenticate by `client_id` alone and must
    /// not send a secret (see [`crate::client_auth`]).
    ///
    /// # Errors
    /// 401 `invalid_client` for an unknown client (also a client of another
    /// project, or an id that is not a registered one) and for every failed
    /// check, with the same description whatever the reason, and with
    /// `WWW-Authenticate: Basic` when the client used HTTP Basic (RFC 6749
    /// section 5.2); `server_error` when storage fails.
    pub async fn authenticate_registered_client(
        &self,
        project: &ProjectId,
        creds: &ClientCredentials,
    ) -> Result<Client, OAuthError> {
        let basic = creds.method() == PresentedMethod::ClientSecretBasic;
        let fail = |e: ClientAuthError| e.to_oauth_error(basic);
        let Ok(id) = RegisteredClientId::new(creds.client_id()) else {
            return Err(fail(ClientAuthError::UnknownClient));
        };
        let Some(client) = self.clients.get(project, &id).await? else {
            return Err(fail(ClientAuthError::UnknownClient));
        };
        creds.verify(&client, self.now()).map_err(fail)?;
        Ok(client)
    }
}
