//! Policy diagnostics with file, line and column, rendered the way compilers print them.

use std::fmt;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The policies cannot be loaded.
    Error,
    /// The policies load, but something deserves a look.
    Warning,
}

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The policy concerned, when known.
    pub policy: Option<String>,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when Cedar says.
    pub help: Option<String>,
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut at = offset.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.bytes().filter(|&c| c == b'\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, text[start..at].chars().count() + 1)
}

impl Diagnostic {
    pub(crate) fn error(
        file: &str,
        line: usize,
        column: usize,
        policy: Option<&str>,
        message: String,
    ) -> Self {
        Self {
            file: file.to_owned(),
            line,
            column,
            policy: policy.map(str::to_owned),
            severity: Severity::Error,
            message,
            help: None,
        }
    }

    pub(crate) fn from_miette(
        file: &str,
        text: &str,
        policy: Option<&str>,
        severity: Severity,
        d: &dyn miette::Diagnostic,
    ) -> Self {
        let offset = d
            .labels()
            .and_then(|mut l| l.next())
            .map_or(0, |l| l.offset());
        let (line, column) = line_col(text, offset);
        Self {
            file: file.to_owned(),
            line,
            column,
            policy: policy.map(str::to_owned),
            severity,
            message: d.to_string(),
            help: d.help().map(|h| h.to_string()),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}:{}: {sev}: ", self.file, self.line, self.column)?;
        if let Some(p) = &self.policy {
            write!(f, "policy `{p}`: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.help {
            write!(f, "\n  help: {h}")?;
        }
        Ok(())
    }
}

pub(crate) fn render_all(d: &[Diagnostic]) -> String {
    d.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
