//! Scopes ([RFC 6749 section 3.3]): space-delimited, case-sensitive tokens.
//!
//! [RFC 6749 section 3.3]: https://www.rfc-editor.org/rfc/rfc6749#section-3.3

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::newtype::string_newtype;

/// Why a scope string was refused; `invalid_scope`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// A token with a character outside `%x21 / %x23-5B / %x5D-7E`, or an
    /// empty token between two spaces.
    #[error("scope contains a malformed scope token")]
    Malformed,
    /// More than 64 tokens or 2048 bytes.
    #[error("scope is too long")]
    TooLong,
}

impl ScopeError {
    /// Always [`ErrorCode::InvalidScope`].
    pub const fn code(&self) -> ErrorCode {
        ErrorCode::InvalidScope
    }
}

/// One scope token.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scope(String);

impl Scope {
    /// Validates one scope token.
    ///
    /// # Errors
    /// [`ScopeError::Malformed`].
    pub fn new(token: impl Into<String>) -> Result<Self, ScopeError> {
        let token = token.into();
        if token.is_empty()
            || token.len() > 256
            || !token.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
        {
            return Err(ScopeError::Malformed);
        }
        Ok(Self(token))
    }

    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(Scope, ScopeError);

/// A set of scopes in first-seen order without duplicates. Serialized as
/// the space-delimited string.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    /// The empty set.
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// Parses a space-delimited scope string (`scope` parameter).
    ///
    /// # Errors
    /// A [`ScopeError`].
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        if s.len() > 2048 {
            return Err(ScopeError::TooLong);
        }
        let mut set = Self::new();
        if s.is_empty() {
            return Ok(set);
        }
        for token in s.split(' ') {
            set.insert(Scope::new(token)?);
            if set.0.len() > 64 {
                return Err(ScopeError::TooLong);
            }
        }
        Ok(set)
    }

    /// Builds a set from tokens.
    ///
    /// # Errors
    /// The first malformed token.
    pub fn from_tokens<'a>(tokens: impl IntoIterator<Item = &'a str>) -> Result<Self, ScopeError> {
        let mut set = Self::new();
        for t in tokens {
            set.insert(Scope::new(t)?);
        }
        Ok(set)
    }

    /// Adds a scope unless present.
    pub fn insert(&mut self, scope: Scope) {
        if !self.0.contains(&scope) {
            self.0.push(scope);
        }
    }

    /// Whether `scope` is in the set.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s.0 == scope)
    }

    /// Whether every scope of `self` is in `other`.
    pub fn is_subset_of(&self, other: &Self) -> bool {
        self.0.iter().all(|s| other.contains(&s.0))
    }

    /// The scopes of `self` that are also in `other`, in `self`'s order.
    #[must_use]
    pub fn intersection(&self, other: &Self) -> Self {
        Self(self.0.iter().filter(|s| other.contains(&s.0)).cloned().collect())
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The scopes.
    pub fn iter(&self) -> std::slice::Iter<'_, Scope> {
        self.0.iter()
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(&s.0)?;
        }
        Ok(())
    }
}

impl TryFrom<String> for ScopeSet {
    type Error = ScopeError;
    fn try_from(s: String) -> Result<Self, ScopeError> {
        Self::parse(&s)
    }
}

impl From<ScopeSet> for String {
    fn from(s: ScopeSet) -> Self {
        s.to_string()
    }
}

impl<'a> IntoIterator for &'a ScopeSet {
    type Item = &'a Scope;
    type IntoIter = std::slice::Iter<'a, Scope>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_and_render() {
        let s = ScopeSet::parse("openid email mcp:read mcp:write email").unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s.to_string(), "openid email mcp:read mcp:write");
        assert!(ScopeSet::parse("").unwrap().is_empty());
        for bad in ["a  b", " a", "a ", "a\"b", "a\\b", "a\tb", "é"] {
            assert_eq!(ScopeSet::parse(bad), Err(ScopeError::Malformed), "{bad:?}");
        }
        let many = vec!["s"; 70]
            .iter()
            .enumerate()
            .map(|(i, _)| format!("s{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(ScopeSet::parse(&many), Err(ScopeError::TooLong));
    }

    #[test]
    fn subsets() {
        let all = ScopeSet::parse("openid email mcp:read mcp:write").unwrap();
        let some = ScopeSet::parse("mcp:read openid").unwrap();
        assert!(some.is_subset_of(&all));
        assert!(!all.is_subset_of(&some));
        assert!(!ScopeSet::parse("MCP:READ").unwrap().is_subset_of(&all));
        assert_eq!(all.intersection(&some).to_string(), "openid mcp:read");
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,300}") {
            let _ = ScopeSet::parse(&s);
        }

        #[test]
        fn round_trips(tokens in proptest::collection::vec("[a-z:]{1,10}", 0..10)) {
            let joined = tokens.join(" ");
            let set = ScopeSet::parse(&joined).unwrap();
            let again = ScopeSet::parse(&set.to_string()).unwrap();
            prop_assert_eq!(again, set);
        }
    }
}
