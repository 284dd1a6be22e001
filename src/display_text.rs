//! Strings a user will read on a consent page: client names, software ids,
//! contacts.
//!
//! A name must render as what it says. Bidirectional overrides and
//! isolates (U+202A..U+202E, U+2066..U+2069) reorder the text around them,
//! so `"Claude\u{202E}lacigol"` shows as another word; zero-width and other
//! invisible characters hide differences between two names that look the
//! same; control characters and line separators break the page layout.
//! All of them are refused where the string enters the server (DCR, CIMD
//! validation), with an error naming the field, instead of being filtered
//! (a filtered name would no longer be what the client registered).
//! Unicode TR 36 section 3 and TR 39 describe these spoofing classes.

/// Whether `s` contains a character that must not appear in text shown to
/// a user: controls, bidirectional formatting, invisible formatting or
/// fillers, and any whitespace other than the ASCII space.
pub(crate) fn has_hidden_characters(s: &str) -> bool {
    s.chars().any(is_hidden)
}

pub(crate) fn is_hidden(c: char) -> bool {
    if c.is_control() || (c.is_whitespace() && c != ' ') {
        return true;
    }
    matches!(
        c,
        // soft hyphen, combining grapheme joiner, Arabic letter mark
        '\u{00AD}' | '\u{034F}' | '\u{061C}'
        // Hangul fillers, Khmer inherent vowels, Mongolian separators
        | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}' | '\u{180B}'..='\u{180F}'
        // zero-width space/non-joiner/joiner, LRM, RLM
        | '\u{200B}'..='\u{200F}'
        // bidi embeddings and overrides
        | '\u{202A}'..='\u{202E}'
        // word joiner, invisible operators, bidi isolates, deprecated format controls
        | '\u{2060}'..='\u{206F}'
        // Hangul filler, variation selectors are allowed (emoji), BOM, half-width filler
        | '\u{3164}' | '\u{FEFF}' | '\u{FFA0}'
        // interlinear annotations, object replacement
        | '\u{FFF9}'..='\u{FFFC}'
        // musical symbol formatting, shorthand format controls
        | '\u{1D173}'..='\u{1D17A}' | '\u{1BCA0}'..='\u{1BCA3}'
        // tag characters
        | '\u{E0000}'..='\u{E007F}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        for ok in [
            "Claude",
            "Visual Studio Code",
            "Cursor",
            "ChatGPT (Connectors)",
            "Mein Büro-Assistent",
            "日本語クライアント",
            "مساعد",
            "Claude (by Anthropic) - official ✔",
            "Heart ❤\u{FE0F}",
        ] {
            assert!(!has_hidden_characters(ok), "{ok:?}");
        }
    }

    #[test]
    fn spoofing_characters_are_refused() {
        for bad in [
            "Claude\u{202E}lacigol",
            "\u{2067}Claude\u{2069}",
            "Cla\u{200B}ude",
            "Claude\u{200D}",
            "Claude\u{2060}",
            "\u{FEFF}Claude",
            "Claude\u{00AD}",
            "Claude\u{E0041}",
            "Claude\u{3164}",
            "Claude\u{061C}",
            "Claude\nOfficial",
            "Claude\u{2028}Official",
            "Claude\u{00A0}Official",
            "Claude\u{0007}",
            "Claude\u{0085}",
        ] {
            assert!(has_hidden_characters(bad), "{bad:?}");
        }
    }
}
