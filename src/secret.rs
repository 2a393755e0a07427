//! A secret text (a credential or key in the configuration) that `Debug` never shows, so that a
//! logged or printed configuration cannot leak it.

/// A secret string; `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}
