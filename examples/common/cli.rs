//! The flag parsing the examples and tools share: `--flag value` pairs
//! and bare switches, read in order, with the same error messages
//! everywhere. Included with `#[path]` (an example has no library to share
//! code through).

#![allow(dead_code, unreachable_pub)]

use std::str::FromStr;

/// The command line's flags, read one at a time.
pub struct Flags {
    args: std::iter::Skip<std::env::Args>,
}

impl Flags {
    /// The process's arguments after the program name.
    pub fn from_env() -> Self {
        Self {
            args: std::env::args().skip(1),
        }
    }

    /// The next flag (or bare argument), if any.
    pub fn next_flag(&mut self) -> Option<String> {
        self.args.next()
    }

    /// The value after `flag`.
    ///
    /// # Errors
    /// `"{flag} needs a value"` when the command line ends.
    pub fn value(&mut self, flag: &str) -> Result<String, String> {
        self.args.next().ok_or_else(|| format!("{flag} needs a value"))
    }

    /// The value after `flag`, as a number.
    ///
    /// # Errors
    /// `"{flag} needs a value"`, or `"{flag} takes a number"`.
    pub fn number<T: FromStr>(&mut self, flag: &str) -> Result<T, String> {
        self.value(flag)?.parse().map_err(|_| format!("{flag} takes a number"))
    }
}

/// Prints `help` and exits with status 0 (`--help`).
pub fn print_help(help: &str) -> ! {
    print!("{help}");
    std::process::exit(0)
}

/// The error for a flag nobody knows.
pub fn unknown(flag: &str) -> String {
    format!("unknown flag {flag}; see --help")
}
