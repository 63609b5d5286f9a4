//! `basePath` and `subPathPattern`: where a claim's directory goes, checked before anything
//! happens.
//!
//! A pattern is literal text and the variables `${.PVC.namespace}`, `${.PVC.name}` and
//! `${.PV.name}`, the names the external-provisioner passes with `--extra-create-metadata`
//! (`csi.storage.k8s.io/pvc/namespace`, `.../pvc/name`, `.../pv/name`). It is checked twice:
//! once as written (no absolute path, no `.` or `..` component, no empty component, no unknown
//! variable, nothing but `[A-Za-z0-9._-]` and `/` as literal text), and once expanded, since a
//! variable's value comes from a request (each value must be a name the API server accepts,
//! and every component of the result is checked again). So the directory is always strictly
//! below `basePath`, whatever the claim is called.

use std::collections::HashMap;
use std::fmt;

use crate::text::Shown;

/// The pattern when a StorageClass gives none: one directory per PV, named as the PV.
pub const DEFAULT_PATTERN: &str = "${.PV.name}";

/// The longest relative path kept (a Linux `PATH_MAX` leaves room for the mount point).
pub const MAX_PATH: usize = 2048;

/// The longest component (`NAME_MAX`), keeping room for the unique suffix.
pub const MAX_COMPONENT: usize = 255 - SUFFIX_LEN;

/// `-` and 8 hexadecimal digits ([`unique_suffix`]).
pub const SUFFIX_LEN: usize = 9;

/// The longest pattern or base path accepted as written.
const MAX_WRITTEN: usize = 1024;

/// A pattern's variables, with the metadata key that carries each value.
pub const VARIABLES: &[(&str, &str)] = &[
    ("${.PVC.namespace}", "csi.storage.k8s.io/pvc/namespace"),
    ("${.PVC.name}", "csi.storage.k8s.io/pvc/name"),
    ("${.PV.name}", "csi.storage.k8s.io/pv/name"),
];

/// One piece of a pattern component.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// An index into [`VARIABLES`].
    Var(usize),
}

/// A checked `subPathPattern`: components of literal text and variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    written: String,
    components: Vec<Vec<Piece>>,
}

/// A checked `basePath`: its components, none of them `.` or `..`; empty for `/`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BasePath(Vec<String>);

/// Why a pattern, a base path or a value does not give a safe directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("{}: {why}", Shown(.written))]
    Written { written: String, why: String },
    #[error(
        "{} needs the claim's metadata {key}, which the external-provisioner passes only with --extra-create-metadata (the manifests set it)",
        Shown(.variable)
    )]
    Missing { variable: &'static str, key: &'static str },
    #[error("{} expands to {}, {why}", Shown(.variable), Shown(.value))]
    Value { variable: &'static str, value: String, why: &'static str },
    #[error("the directory {} would be {why}", Shown(.path))]
    Result { path: String, why: &'static str },
}

fn written(s: &str, why: impl Into<String>) -> PatternError {
    PatternError::Written { written: s.to_string(), why: why.into() }
}

/// True for the literal characters a pattern or a base path may hold.
fn literal(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Checks a written path's shape: relative (the caller strips a base path's `/`), components
/// non-empty and neither `.` nor `..`.
fn components(s: &str) -> Result<Vec<&str>, PatternError> {
    if s.len() > MAX_WRITTEN {
        return Err(written(s, format!("longer than {MAX_WRITTEN} bytes")));
    }
    let parts: Vec<&str> = s.split('/').collect();
    for part in &parts {
        match *part {
            "" => return Err(written(s, "has an empty component (a leading, trailing or doubled /)")),
            "." | ".." => {
                return Err(written(s, format!("has a {part} component; the directory must stay below basePath")));
            }
            _ => {}
        }
    }
    Ok(parts)
}

impl BasePath {
    /// Parses `basePath`: `/` or an absolute path of literal components.
    pub fn parse(s: &str) -> Result<Self, PatternError> {
        if s == "/" {
            return Ok(Self::default());
        }
        let Some(rest) = s.strip_prefix('/') else {
            return Err(written(s, "is not absolute; use / or a path such as /k8s"));
        };
        let parts = components(rest)?;
        if let Some(c) = rest.chars().find(|&c| c != '/' && !literal(c)) {
            return Err(written(
                s,
                format!("has {}; use letters, digits, '.', '_', '-' and '/'", Shown(&c.to_string())),
            ));
        }
        if parts.first() == Some(&super::registry::STATE_DIR) {
            return Err(written(s, format!("is the driver's own directory {}", super::registry::STATE_DIR)));
        }
        Ok(Self(parts.into_iter().map(String::from).collect()))
    }

    /// The base path relative to the file system's root (empty for `/`).
    pub fn relative(&self) -> String {
        self.0.join("/")
    }
}

impl fmt::Display for BasePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.0.join("/"))
    }
}

impl Pattern {
    /// Parses `subPathPattern`.
    pub fn parse(s: &str) -> Result<Self, PatternError> {
        if s.starts_with('/') {
            return Err(written(s, "is absolute; a pattern is relative to basePath"));
        }
        let mut out = Vec::new();
        for part in components(s)? {
            let mut pieces = Vec::new();
            let mut rest = part;
            while !rest.is_empty() {
                if let Some(after) = rest.strip_prefix("${") {
                    let Some(end) = after.find('}') else {
                        return Err(written(s, "has a ${ without its }"));
                    };
                    let name = &rest[..end + 3];
                    let Some(i) = VARIABLES.iter().position(|(v, _)| *v == name) else {
                        let known: Vec<&str> = VARIABLES.iter().map(|(v, _)| *v).collect();
                        return Err(written(
                            s,
                            format!("has the unknown variable {}; known: {}", Shown(name), known.join(", ")),
                        ));
                    };
                    pieces.push(Piece::Var(i));
                    rest = &rest[name.len()..];
                } else {
                    let end = rest.find("${").unwrap_or(rest.len());
                    let text = &rest[..end];
                    if let Some(c) = text.chars().find(|&c| !literal(c)) {
                        return Err(written(
                            s,
                            format!("has {}; literal text is letters, digits, '.', '_' and '-'", Shown(&c.to_string())),
                        ));
                    }
                    pieces.push(Piece::Text(text.to_string()));
                    rest = &rest[end..];
                }
            }
            out.push(pieces);
        }
        if out.first().is_some_and(|c| c == &[Piece::Text(super::registry::STATE_DIR.to_string())]) {
            return Err(written(s, format!("starts with the driver's own directory {}", super::registry::STATE_DIR)));
        }
        Ok(Self { written: s.to_string(), components: out })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.written
    }

    /// The metadata keys this pattern needs.
    pub fn needs(&self) -> impl Iterator<Item = &'static str> + '_ {
        let mut seen = [false; VARIABLES.len()];
        self.components.iter().flatten().filter_map(move |p| match p {
            Piece::Var(i) if !std::mem::replace(&mut seen[*i], true) => Some(VARIABLES[*i].1),
            _ => None,
        })
    }

    /// The directory for a claim, relative to the file system's root: `base`, then the pattern
    /// expanded with the request's metadata (`csi.storage.k8s.io/...` keys), then `suffix` on
    /// the last component. Every value and every resulting component is checked.
    pub fn expand(
        &self,
        base: &BasePath,
        metadata: &HashMap<String, String>,
        suffix: Option<&str>,
    ) -> Result<String, PatternError> {
        let mut parts: Vec<String> = base.0.clone();
        let last = self.components.len() - 1;
        for (n, component) in self.components.iter().enumerate() {
            let mut out = String::new();
            for piece in component {
                match piece {
                    Piece::Text(t) => out.push_str(t),
                    Piece::Var(i) => {
                        let (variable, key) = VARIABLES[*i];
                        let value = metadata
                            .get(key)
                            .map(|v| v.as_str())
                            .filter(|v| !v.is_empty())
                            .ok_or(PatternError::Missing { variable, key })?;
                        check_value(variable, value)?;
                        out.push_str(value);
                    }
                }
            }
            if n == last
                && let Some(suffix) = suffix
            {
                out.push_str(suffix);
            }
            let bad = match out.as_str() {
                "" => Some("an empty name"),
                "." | ".." => Some("outside basePath"),
                _ if out.len() > MAX_COMPONENT + if n == last { SUFFIX_LEN } else { 0 } => Some("a name too long"),
                _ => None,
            };
            parts.push(out);
            if let Some(why) = bad {
                return Err(PatternError::Result { path: parts.join("/"), why });
            }
        }
        let path = parts.join("/");
        if parts.first().map(String::as_str) == Some(super::registry::STATE_DIR) {
            return Err(PatternError::Result { path, why: "the driver's own directory" });
        }
        if path.len() > MAX_PATH {
            return Err(PatternError::Result { path, why: "a path too long" });
        }
        Ok(path)
    }
}

/// A value from the request's metadata: a Kubernetes name (a DNS subdomain: lowercase
/// letters, digits, `-` and `.`, at most 253 bytes), never `.` or `..`.
fn check_value(variable: &'static str, value: &str) -> Result<(), PatternError> {
    let why = if value.len() > 253 {
        Some("longer than a Kubernetes name")
    } else if !value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        || !value.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !value.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        Some(
            "not a Kubernetes name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)",
        )
    } else if value == "." || value == ".." {
        Some("outside basePath")
    } else {
        None
    };
    match why {
        Some(why) => Err(PatternError::Value { variable, value: value.to_string(), why }),
        None => Ok(()),
    }
}

/// The suffix that makes a claim's directory its own (`ensureUniqueDirectory`): `-` and the
/// first 8 hexadecimal digits of the SHA-256 of the volume name (the PV's name, which holds
/// the claim's UID). The same on every retry of one claim; a re-created claim gets another.
pub fn unique_suffix(volume_name: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(volume_name.as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata() -> HashMap<String, String> {
        HashMap::from([
            ("csi.storage.k8s.io/pvc/namespace".to_string(), "team-a".to_string()),
            ("csi.storage.k8s.io/pvc/name".to_string(), "scratch".to_string()),
            ("csi.storage.k8s.io/pv/name".to_string(), "pvc-5f0e".to_string()),
        ])
    }

    #[test]
    fn patterns_expand_below_the_base() {
        let base = BasePath::parse("/k8s").unwrap();
        let p = Pattern::parse("${.PVC.namespace}/${.PVC.name}").unwrap();
        assert_eq!(p.expand(&base, &metadata(), None).unwrap(), "k8s/team-a/scratch");
        assert_eq!(p.expand(&base, &metadata(), Some("-0a1b2c3d")).unwrap(), "k8s/team-a/scratch-0a1b2c3d");
        let p = Pattern::parse(DEFAULT_PATTERN).unwrap();
        assert_eq!(p.expand(&BasePath::parse("/").unwrap(), &metadata(), None).unwrap(), "pvc-5f0e");
        let p = Pattern::parse("claims/${.PVC.namespace}-${.PVC.name}.v1").unwrap();
        assert_eq!(p.expand(&base, &metadata(), None).unwrap(), "k8s/claims/team-a-scratch.v1");
        assert_eq!(p.needs().collect::<Vec<_>>(), ["csi.storage.k8s.io/pvc/namespace", "csi.storage.k8s.io/pvc/name"]);
    }

    #[test]
    fn patterns_that_could_leave_the_base_are_refused_as_written() {
        for bad in [
            "/abs",
            "../x",
            "a/../b",
            "a/./b",
            "a//b",
            "a/",
            "",
            "${.PVC.nam}",
            "${.PVC.name",
            "${.PVC.name}$x",
            "a b",
            "a\nb",
            "a\\b",
            "~",
            ".fsx-csi-driver/x",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
        for bad in ["k8s", "/k8s/", "/k8s/../etc", "//", "/./a", "/a b", "/.fsx-csi-driver", "/a\0b"] {
            assert!(BasePath::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(BasePath::parse("/").unwrap().relative(), "");
        assert_eq!(BasePath::parse("/a/b").unwrap().to_string(), "/a/b");
    }

    #[test]
    fn hostile_values_are_refused_when_expanded() {
        let base = BasePath::default();
        let p = Pattern::parse("${.PVC.namespace}/${.PVC.name}").unwrap();
        for value in ["..", ".", "a/b", "A", "x\u{1b}", &"a".repeat(254), "", ".fsx-csi-driver", "a-", "-a"] {
            let mut m = metadata();
            m.insert("csi.storage.k8s.io/pvc/name".into(), value.to_string());
            assert!(p.expand(&base, &m, None).is_err(), "{value:?}");
        }
        let mut m = metadata();
        m.remove("csi.storage.k8s.io/pvc/namespace");
        let e = p.expand(&base, &m, None).unwrap_err();
        assert!(e.to_string().contains("--extra-create-metadata"), "{e}");
        // Values side by side: each is checked alone, and the component they make again.
        let p = Pattern::parse("${.PVC.name}${.PV.name}").unwrap();
        let mut m = metadata();
        m.insert("csi.storage.k8s.io/pvc/name".into(), "a.".into());
        assert!(p.expand(&base, &m, None).is_err(), "a name ends with a letter or digit");
        m.insert("csi.storage.k8s.io/pvc/name".into(), "a".into());
        m.insert("csi.storage.k8s.io/pv/name".into(), ".".into());
        assert!(p.expand(&base, &m, None).is_err());
        m.insert("csi.storage.k8s.io/pv/name".into(), "b".into());
        assert_eq!(p.expand(&base, &m, None).unwrap(), "ab");
        // The driver's own directory is never a claim's, however it is reached.
        let p = Pattern::parse("${.PVC.name}").unwrap();
        m.insert("csi.storage.k8s.io/pvc/name".into(), "fsx-csi-driver".into());
        assert!(p.expand(&base, &m, None).is_ok());
        let p = Pattern::parse(".${.PVC.name}").unwrap();
        assert!(p.expand(&base, &m, None).is_err());
    }

    #[test]
    fn the_unique_suffix_is_stable_and_short() {
        let s = unique_suffix("pvc-1");
        assert_eq!(s.len(), SUFFIX_LEN);
        assert_eq!(s, unique_suffix("pvc-1"));
        assert_ne!(s, unique_suffix("pvc-2"));
    }
}
