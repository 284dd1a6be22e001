//! Client identifiers: registered ids and CIMD URLs.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::client_id_url::{ClientIdUrl, ClientIdUrlError, ClientIdUrlPolicy};
use crate::newtype::string_newtype;

/// A client id issued by registration: `client_` and 24 lowercase hex digits.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegisteredClientId(String);

impl RegisteredClientId {
    /// Validates the form.
    ///
    /// # Errors
    /// [`ClientIdError::Malformed`].
    pub fn new(id: impl Into<String>) -> Result<Self, ClientIdError> {
        let id = id.into();
        let ok = id
            .strip_prefix("client_")
            .is_some_and(|h| h.len() == 24 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        if ok {
            Ok(Self(id))
        } else {
            Err(ClientIdError::Malformed)
        }
    }

    /// A fresh id from 12 random bytes.
    pub fn from_random(random: &[u8; 12]) -> Self {
        use fmt::Write as _;
        let mut s = String::with_capacity(31);
        s.push_str("client_");
        for b in random {
            let _ = write!(s, "{b:02x}");
        }
        Self(s)
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(RegisteredClientId, ClientIdError);

/// Why a `client_id` parameter was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientIdError {
    /// Neither a registered id nor an `https://` URL.
    #[error("client_id is neither a registered client id nor an https URL")]
    Malformed,
    /// An `https://` id that is not an acceptable CIMD URL.
    #[error("client_id URL is not acceptable: {0}")]
    Url(#[from] ClientIdUrlError),
}

/// A client identifier as sent in requests.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ClientId {
    /// Issued by this server's registration endpoint.
    Registered(RegisteredClientId),
    /// A Client ID Metadata Document URL.
    Metadata(ClientIdUrl),
}

impl ClientId {
    /// Parses a `client_id`, with a CIMD URL policy for the URL form.
    ///
    /// # Errors
    /// A [`ClientIdError`].
    pub fn parse_with(s: &str, policy: ClientIdUrlPolicy) -> Result<Self, ClientIdError> {
        if s.starts_with("client_") {
            return RegisteredClientId::new(s).map(Self::Registered);
        }
        if s.get(..8).is_some_and(|p| p.eq_ignore_ascii_case("https://")) {
            return Ok(Self::Metadata(ClientIdUrl::parse_with(s, policy)?));
        }
        Err(ClientIdError::Malformed)
    }

    /// The id string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Registered(r) => r.as_str(),
            Self::Metadata(u) => u.as_str(),
        }
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClientId").field(&self.as_str()).finish()
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for ClientId {
    type Error = ClientIdError;
    fn try_from(s: String) -> Result<Self, ClientIdError> {
        Self::parse_with(
            &s,
            ClientIdUrlPolicy {
                allow_root_path: true,
                allow_query: true,
            },
        )
    }
}

impl From<ClientId> for String {
    fn from(c: ClientId) -> Self {
        c.as_str().to_owned()
    }
}
