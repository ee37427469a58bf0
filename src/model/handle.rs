//! Identifiers (`prefix/suffix`), prefixes and their normalization.
//!
//! An identifier such as `88.100.1/SN-0001` splits at its first `/` into a prefix (`88.100.1`,
//! dot-separated and hierarchical) and a suffix (`SN-0001`, which may itself contain `/`).
//!
//! Case rules:
//! - the prefix is ASCII-case-insensitive everywhere (as in every Handle implementation);
//! - the suffix follows the node's [`SuffixCase`]: `Sensitive` (the national IDIS SDKs' rule,
//!   our default) or `Insensitive` (Handle.Net's default: ASCII letters fold);
//! - prefix handles `0.NA/<prefix>` fold in full, because their suffix *is* a prefix.
//!
//! [`Handle`] keeps the text as the client wrote it (clients such as pyhandle compare the echoed
//! handle byte for byte) and the normalized key used for storage and comparison.

use std::fmt;

/// Longest identifier accepted, in UTF-8 bytes (Handle.Net and the IDIS SDKs agree on 2048).
pub const MAX_HANDLE_BYTES: usize = 2048;

/// The prefix under which prefix handles live.
pub const PREFIX_NA: &str = "0.NA";

/// How the suffix of an identifier compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SuffixCase {
    /// `SN-0001` and `sn-0001` are different identifiers (IDIS SDK behaviour).
    #[default]
    Sensitive,
    /// ASCII letters of the suffix fold to upper case (Handle.Net default).
    Insensitive,
}

/// Why an identifier or prefix was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    #[error("identifier is empty")]
    Empty,
    #[error("identifier is {0} bytes, longer than the {MAX_HANDLE_BYTES}-byte limit")]
    TooLong(usize),
    #[error("identifier contains a control character at byte {0}")]
    ControlCharacter(usize),
    #[error("identifier has no '/' between prefix and suffix")]
    MissingSlash,
    #[error("identifier has an empty suffix")]
    EmptySuffix,
    #[error("invalid prefix {prefix:?}: {reason}")]
    InvalidPrefix {
        prefix: String,
        reason: &'static str,
    },
}

/// A validated, dot-separated naming-authority prefix such as `88.100.1`, stored upper-cased.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix(String);

impl Prefix {
    /// Parse and normalize a prefix. Segments are non-empty; no whitespace, `/` or control
    /// characters.
    pub fn parse(text: &str) -> Result<Prefix, HandleError> {
        let bad = |reason| HandleError::InvalidPrefix {
            prefix: text.to_string(),
            reason,
        };
        if text.is_empty() {
            return Err(bad("empty"));
        }
        if text.len() > MAX_HANDLE_BYTES {
            return Err(HandleError::TooLong(text.len()));
        }
        if text.contains('/') {
            return Err(bad("contains '/'"));
        }
        if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad("contains whitespace or a control character"));
        }
        if text.split('.').any(str::is_empty) {
            return Err(bad("has an empty segment"));
        }
        Ok(Prefix(text.to_ascii_uppercase()))
    }

    /// The normalized (upper-cased) text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parent prefix: `88.100.1` → `88.100` → `88` → none.
    pub fn parent(&self) -> Option<Prefix> {
        self.0.rfind('.').map(|at| Prefix(self.0[..at].to_string()))
    }

    /// This prefix and every ancestor, nearest first: `88.100.1`, `88.100`, `88`.
    pub fn ancestry(&self) -> impl Iterator<Item = Prefix> {
        std::iter::successors(Some(self.clone()), Prefix::parent)
    }

    /// True when `self` equals `other` or is one of its ancestors.
    pub fn is_ancestor_or_self_of(&self, other: &Prefix) -> bool {
        other.0 == self.0
            || (other.0.len() > self.0.len()
                && other.0.starts_with(&self.0)
                && other.0.as_bytes()[self.0.len()] == b'.')
    }

    /// The prefix handle `0.NA/<prefix>` that holds this prefix's administrators and sites.
    pub fn na_handle(&self) -> Handle {
        Handle {
            text: format!("{PREFIX_NA}/{}", self.0),
            key: format!("{PREFIX_NA}/{}", self.0),
            slash: PREFIX_NA.len(),
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated identifier `prefix/suffix`.
#[derive(Debug, Clone)]
pub struct Handle {
    /// As the client wrote it.
    text: String,
    /// Normalized: prefix upper-cased, suffix per the case rule. Equality and storage use this.
    key: String,
    /// Byte offset of the first '/'.
    slash: usize,
}

impl Handle {
    /// Parse and validate `prefix/suffix` under the given suffix case rule.
    ///
    /// A slash-less text is not accepted here; protocol front ends that treat `X` as `0.NA/X`
    /// (the native protocol does) use [`Handle::parse_lenient`].
    pub fn parse(text: &str, case: SuffixCase) -> Result<Handle, HandleError> {
        if text.is_empty() {
            return Err(HandleError::Empty);
        }
        if text.len() > MAX_HANDLE_BYTES {
            return Err(HandleError::TooLong(text.len()));
        }
        if let Some((at, _)) = text.char_indices().find(|(_, c)| c.is_control()) {
            return Err(HandleError::ControlCharacter(at));
        }
        let slash = text.find('/').ok_or(HandleError::MissingSlash)?;
        let prefix = Prefix::parse(&text[..slash])?;
        let suffix = &text[slash + 1..];
        if suffix.is_empty() {
            return Err(HandleError::EmptySuffix);
        }
        let fold_suffix = case == SuffixCase::Insensitive || prefix.as_str() == PREFIX_NA;
        let mut key = String::with_capacity(text.len());
        key.push_str(prefix.as_str());
        key.push('/');
        if fold_suffix {
            key.push_str(&suffix.to_ascii_uppercase());
        } else {
            key.push_str(suffix);
        }
        Ok(Handle {
            text: text.to_string(),
            key,
            slash,
        })
    }

    /// Like [`Handle::parse`], but a slash-less `X` means the prefix handle `0.NA/X`.
    pub fn parse_lenient(text: &str, case: SuffixCase) -> Result<Handle, HandleError> {
        if !text.is_empty() && !text.contains('/') {
            return Handle::parse(&format!("{PREFIX_NA}/{text}"), case);
        }
        Handle::parse(text, case)
    }

    /// The text as the client wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The normalized key (storage and comparison).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The prefix part, normalized.
    pub fn prefix(&self) -> Prefix {
        Prefix(self.key[..self.slash].to_string())
    }

    /// The suffix as written.
    pub fn suffix(&self) -> &str {
        &self.text[self.slash + 1..]
    }

    /// For a prefix handle `0.NA/88.100.1`, the prefix it describes (`88.100.1`).
    pub fn described_prefix(&self) -> Option<Prefix> {
        if &self.key[..self.slash] == PREFIX_NA {
            Prefix::parse(&self.key[self.slash + 1..]).ok()
        } else {
            None
        }
    }

    /// A new handle with `more` appended to the suffix (used to mint suffixes).
    pub fn with_suffix_appended(
        &self,
        more: &str,
        case: SuffixCase,
    ) -> Result<Handle, HandleError> {
        Handle::parse(&format!("{}{more}", self.text), case)
    }
}

impl PartialEq for Handle {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Handle {}

impl std::hash::Hash for Handle {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state)
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_first_slash_and_folds_prefix() {
        let h = Handle::parse("88.100.1/SN-0001/a", SuffixCase::Sensitive).unwrap();
        assert_eq!(h.prefix().as_str(), "88.100.1");
        assert_eq!(h.suffix(), "SN-0001/a");
        let lower = Handle::parse("abc.x/Sn", SuffixCase::Sensitive).unwrap();
        assert_eq!(lower.key(), "ABC.X/Sn");
        assert_eq!(lower.as_str(), "abc.x/Sn");
    }

    #[test]
    fn suffix_case_rule_is_configurable() {
        let a = Handle::parse("88.1/sn-1", SuffixCase::Sensitive).unwrap();
        let b = Handle::parse("88.1/SN-1", SuffixCase::Sensitive).unwrap();
        assert_ne!(a, b);
        let a = Handle::parse("88.1/sn-1", SuffixCase::Insensitive).unwrap();
        let b = Handle::parse("88.1/SN-1", SuffixCase::Insensitive).unwrap();
        assert_eq!(a, b);
        // Prefix handles always fold: their suffix is a prefix.
        let a = Handle::parse("0.na/88.abc", SuffixCase::Sensitive).unwrap();
        assert_eq!(a.key(), "0.NA/88.ABC");
        assert_eq!(a.described_prefix().unwrap().as_str(), "88.ABC");
    }

    #[test]
    fn rejects_bad_identifiers() {
        let s = SuffixCase::Sensitive;
        assert_eq!(Handle::parse("", s), Err(HandleError::Empty));
        assert_eq!(Handle::parse("88.1", s), Err(HandleError::MissingSlash));
        assert_eq!(Handle::parse("88.1/", s), Err(HandleError::EmptySuffix));
        assert_eq!(
            Handle::parse("88.1/a\nb", s),
            Err(HandleError::ControlCharacter(6))
        );
        assert_eq!(
            Handle::parse("88.1/a\u{85}", s),
            Err(HandleError::ControlCharacter(6))
        );
        assert!(matches!(
            Handle::parse("88..1/a", s),
            Err(HandleError::InvalidPrefix { .. })
        ));
        assert!(matches!(
            Handle::parse("/a", s),
            Err(HandleError::InvalidPrefix { .. })
        ));
        assert!(matches!(
            Handle::parse("8 8/a", s),
            Err(HandleError::InvalidPrefix { .. })
        ));
        let long = format!("88.1/{}", "x".repeat(MAX_HANDLE_BYTES));
        assert_eq!(
            Handle::parse(&long, s),
            Err(HandleError::TooLong(long.len()))
        );
        let exact = format!("88.1/{}", "x".repeat(MAX_HANDLE_BYTES - 5));
        assert!(Handle::parse(&exact, s).is_ok());
    }

    #[test]
    fn slashless_means_prefix_handle_when_lenient() {
        let h = Handle::parse_lenient("88.100", SuffixCase::Sensitive).unwrap();
        assert_eq!(h.key(), "0.NA/88.100");
    }

    #[test]
    fn prefix_ancestry() {
        let p = Prefix::parse("88.100.1").unwrap();
        let chain: Vec<String> = p.ancestry().map(|p| p.to_string()).collect();
        assert_eq!(chain, ["88.100.1", "88.100", "88"]);
        assert_eq!(p.na_handle().key(), "0.NA/88.100.1");
        let top = Prefix::parse("88").unwrap();
        assert!(top.is_ancestor_or_self_of(&p));
        assert!(!Prefix::parse("88.10").unwrap().is_ancestor_or_self_of(&p));
        assert!(p.is_ancestor_or_self_of(&p));
    }
}
