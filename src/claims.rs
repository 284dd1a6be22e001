//! The user's claims that ID tokens and userinfo release, below both
//! [`crate::jwt`] (which signs them) and [`crate::store`] (whose
//! `UserClaimsSource` supplies them); public as [`crate::jwt::UserClaims`].

use serde::{Deserialize, Serialize};

use crate::scope::ScopeSet;

/// Claims about the user that the host supplies for ID tokens and the
/// userinfo endpoint (OpenID Connect Core section 5.1). Only claims of
/// granted scopes are released (`email`, `email_verified` need `email`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UserClaims {
    /// `email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `email_verified`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// `name` (released with the `profile` scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl UserClaims {
    /// Claims with an email address.
    pub fn with_email(email: impl Into<String>, verified: bool) -> Self {
        Self {
            email: Some(email.into()),
            email_verified: Some(verified),
            name: None,
        }
    }

    /// The claims `scopes` release (OpenID Connect Core section 5.4):
    /// `email` and `email_verified` with `email`, `name` with `profile`.
    pub fn filtered(&self, scopes: &ScopeSet) -> Self {
        let mut out = Self::default();
        if scopes.contains("email") {
            out.email.clone_from(&self.email);
            out.email_verified = self.email_verified;
        }
        if scopes.contains("profile") {
            out.name.clone_from(&self.name);
        }
        out
    }
}
