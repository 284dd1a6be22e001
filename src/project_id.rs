//! The project identifier, below [`crate::project`] and every module that
//! only needs to name a project (keys, upstream login); public as
//! [`crate::project::ProjectId`].

use serde::{Deserialize, Serialize};

use crate::newtype::string_newtype;

/// A project identifier: 1 to 64 characters of `[A-Za-z0-9_-]`
/// (`proj_acme_prod`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProjectId(String);

/// The string was not a valid project id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("project id must be 1 to 64 characters of [A-Za-z0-9_-]")]
pub struct InvalidProjectId;

impl ProjectId {
    /// Validates a project id.
    ///
    /// # Errors
    /// [`InvalidProjectId`].
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidProjectId> {
        let id = id.into();
        if (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            Ok(Self(id))
        } else {
            Err(InvalidProjectId)
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(ProjectId, InvalidProjectId);
