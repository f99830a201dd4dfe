//! Config errors that point at the file, the line, the column and the key.

use std::fmt;
use std::ops::Range;

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Byte range in the source, when known.
    pub span: Option<Range<usize>>,
    /// 1-based line and column of the span's start, filled by [`Diagnostic::locate`].
    pub line_col: Option<(usize, usize)>,
    /// Dotted key path such as `site[0].route[2].pool`; empty when toml could not say.
    pub key: String,
    pub message: String,
}

impl Diagnostic {
    pub fn new(
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            span,
            line_col: None,
            key: key.into(),
            message: message.into(),
        }
    }

    /// A problem found after validation (a file that does not load, a name that does not resolve), at the
    /// line and column the model kept for the value.
    pub fn at(at: crate::model::At, key: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            span: None,
            line_col: Some((at.line, at.col)),
            key: key.into(),
            message: message.into(),
        }
    }

    /// Turns the byte span into a line and column of `source`.
    pub fn locate(mut self, source: &str) -> Self {
        if let Some(span) = &self.span {
            let start = span.start.min(source.len());
            let before = &source.as_bytes()[..start];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let col = start
                - before
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1)
                + 1;
            self.line_col = Some((line, col));
        }
        self
    }
}

/// Why a config could not be used. `Display` gives one line per problem, `file:line:col: key: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config: {error}")]
    Io { path: String, error: String },
    #[error("{}", render(origin, diagnostics))]
    Invalid {
        origin: String,
        diagnostics: Vec<Diagnostic>,
    },
}

fn render(origin: &str, diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, d) in diagnostics.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&d.with_origin(origin).to_string());
    }
    out
}

impl Diagnostic {
    fn with_origin<'a>(&'a self, origin: &'a str) -> impl fmt::Display + 'a {
        struct D<'a>(&'a Diagnostic, &'a str);
        impl fmt::Display for D<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let (d, origin) = (self.0, self.1);
                write!(f, "{origin}")?;
                if let Some((line, col)) = d.line_col {
                    write!(f, ":{line}:{col}")?;
                }
                if !d.key.is_empty() {
                    write!(f, ": {}", d.key)?;
                }
                write!(f, ": {}", d.message)
            }
        }
        D(self, origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_counts_lines_and_columns_from_one() {
        let src = "a = 1\nbb = 2\n";
        let d = Diagnostic::new(Some(8..9), "bb", "bad").locate(src);
        assert_eq!(d.line_col, Some((2, 3)));
    }

    #[test]
    fn display_names_file_line_and_key() {
        let err = ConfigError::Invalid {
            origin: "g.toml".into(),
            diagnostics: vec![
                Diagnostic::new(Some(0..1), "pool.web.retries", "too many").locate("x")
            ],
        };
        assert_eq!(err.to_string(), "g.toml:1:1: pool.web.retries: too many");
    }
}
