//! Deterministic `ClientRequestToken`s.
//!
//! FSx accepts 1–63 characters of `[A-Za-z0-9_.-]`. A token is derived from the volume name
//! and a generation number: the same name and generation always give the same token, so a
//! retry after a lost response, a time-out or a restart returns the same file system. The
//! generation moves on only after a file system for the name FAILED or was deleted, since FSx
//! keeps answering a used token with its old file system for a while.

use sha2::{Digest, Sha256};

const MAX_LEN: usize = 63;

fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// The token for `name` at `generation`.
///
/// Names that are already valid token text and short enough are used as they are
/// (`pvc-…` names are), followed by `.g<generation>`, so tokens are readable in CloudTrail.
/// Any other name is replaced by a hash of it, so two names never share a token.
pub fn client_request_token(name: &str, generation: u32) -> String {
    let suffix = format!(".g{generation}");
    if !name.is_empty()
        && name.len() + suffix.len() <= MAX_LEN
        && name.bytes().all(token_char)
        && !name.starts_with("h-")
    {
        return format!("{name}{suffix}");
    }
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest.iter().take(24).map(|b| format!("{b:02x}")).collect();
    format!("h-{hex}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(t: &str) -> bool {
        !t.is_empty() && t.len() <= MAX_LEN && t.bytes().all(token_char)
    }

    #[test]
    fn pvc_names_stay_readable() {
        let t = client_request_token("pvc-3c8e1a8e-9b6f-4b8e-8d3a-1f2e3d4c5b6a", 0);
        assert_eq!(t, "pvc-3c8e1a8e-9b6f-4b8e-8d3a-1f2e3d4c5b6a.g0");
        assert!(valid(&t));
    }

    #[test]
    fn deterministic_and_generation_sensitive() {
        assert_eq!(client_request_token("a", 1), client_request_token("a", 1));
        assert_ne!(client_request_token("a", 1), client_request_token("a", 2));
    }

    #[test]
    fn odd_names_are_hashed_and_valid() {
        for name in ["", "name with spaces", &"x".repeat(200), "ünïcode", "a/b", "h-abc"] {
            let t = client_request_token(name, 7);
            assert!(valid(&t), "{t}");
            assert!(t.starts_with("h-"));
        }
        assert_ne!(client_request_token("a b", 0), client_request_token("a_b", 0));
    }
}
