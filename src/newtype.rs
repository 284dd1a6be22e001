//! The impls every validated string newtype shares.

/// For a `struct $ty(String)` with `fn new(impl Into<String>) -> Result<Self, $err>`:
/// `Debug` (`$ty("...")`), `Display` (the string; omit with `no_display`),
/// `TryFrom<String>` through `new` (what serde's `try_from` uses, so
/// deserializing goes through the same validator), and `From<$ty> for String`.
macro_rules! string_newtype {
    ($ty:ident, $err:ty) => {
        string_newtype!($ty, $err, no_display);
        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
    ($ty:ident, $err:ty, no_display) => {
        impl ::std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_tuple(stringify!($ty)).field(&self.0).finish()
            }
        }
        impl ::std::convert::TryFrom<String> for $ty {
            type Error = $err;
            fn try_from(s: String) -> Result<Self, $err> {
                Self::new(s)
            }
        }
        impl From<$ty> for String {
            fn from(v: $ty) -> Self {
                v.0
            }
        }
    };
}

pub(crate) use string_newtype;
