//! What the error types of the boundaries share: [`Cause`], an underlying error kept as a
//! source (the AWS SDK's, kube-rs's), and [`Chain`], which shows an error with its sources,
//! the way a message to a user or a log line needs it.

use std::fmt;
use std::sync::Arc;

/// An underlying error, kept as the source of one of the driver's errors so that nothing of it
/// is lost and nothing is flattened into a string early. Two causes are equal if they say the
/// same (the driver's errors compare equal in tests).
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(e))
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The cause stands for the error it holds: its sources are that error's sources.
impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Cause {}

/// An error followed by each of its sources, `: `-separated.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut source = self.0.source();
        // An absurd depth must not flood a message or a log line.
        for _ in 0..16 {
            let Some(e) = source else { break };
            let text = e.to_string();
            // Some errors repeat their source's text in their own (`HyperError: ...`): say it
            // once.
            if !text.is_empty() && !last.contains(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            source = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Cause);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn a_chain_shows_every_source() {
        let e = Outer(Cause::new(Middle(std::io::Error::other("connection refused"))));
        assert_eq!(Chain(&e).to_string(), "outer: middle: connection refused");
        assert_eq!(Cause::new(std::io::Error::other("x")), Cause::new(std::io::Error::other("x")));
        // An error that repeats its source's text says it once.
        #[derive(Debug, thiserror::Error)]
        #[error("HyperError: {0}")]
        struct Repeats(#[source] std::io::Error);
        let e = Repeats(std::io::Error::other("connection refused"));
        assert_eq!(Chain(&e).to_string(), "HyperError: connection refused");
    }
}
