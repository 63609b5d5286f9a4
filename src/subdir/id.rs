//! The volume id of a subdirectory volume: `fs-0123456789abcdef0/subdir/1000042`.
//!
//! It names the file system and the volume's project id, and nothing else: the directory is
//! found from the project id in the driver's registry on the file system itself
//! ([`super::registry`]), so the id stays short (at most 40 bytes, far below CSI's 128) whatever
//! the directory's path, and DeleteVolume, expansion and stats need nothing but the id after
//! any restart. A file system's own volume id (`fs-…`) has no `/`, so the two kinds never meet.

use std::fmt;

use crate::fsx::is_file_system_id;

/// Between the file system id and the project id.
const MARK: &str = "/subdir/";

/// The longest id: `fs-` and 17 hex digits, the mark, and a 10-digit `u32`.
pub const MAX_LEN: usize = 3 + 17 + MARK.len() + 10;

/// A subdirectory volume's id, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubdirId {
    /// The file system (`fs-…`).
    pub file_system_id: String,
    /// The directory's Lustre project id, its key in the registry.
    pub project: u32,
}

impl SubdirId {
    /// Parses a volume id; `None` for anything that is not exactly a subdirectory volume's id
    /// (a file system's own id, a static PV's handle, a hostile string).
    pub fn parse(id: &str) -> Option<Self> {
        if id.len() > MAX_LEN {
            return None;
        }
        let (fs, project) = id.split_once(MARK)?;
        // Canonical digits only: one project, one id.
        let canonical = !project.is_empty()
            && project.bytes().all(|b| b.is_ascii_digit())
            && (project == "0" || !project.starts_with('0'));
        if !is_file_system_id(fs) || !canonical {
            return None;
        }
        Some(Self { file_system_id: fs.to_string(), project: project.parse().ok()? })
    }

    /// True if `id` looks like a subdirectory volume's id, even a malformed one (to tell "not
    /// found" from "not this kind of volume").
    pub fn is_subdir_like(id: &str) -> bool {
        id.contains(MARK)
    }
}

impl fmt::Display for SubdirId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{MARK}{}", self.file_system_id, self.project)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_stay_short() {
        let id = SubdirId { file_system_id: "fs-0123456789abcdef0".into(), project: u32::MAX };
        let s = id.to_string();
        assert_eq!(s, "fs-0123456789abcdef0/subdir/4294967295");
        assert_eq!(s.len(), MAX_LEN);
        assert_eq!(SubdirId::parse(&s), Some(id));
        assert_eq!(SubdirId::parse("fs-01234567/subdir/0").map(|i| i.project), Some(0));
    }

    #[test]
    fn anything_else_is_not_a_subdirectory_id() {
        for id in [
            "fs-0123456789abcdef0",
            "fs-0123456789abcdef0/subdir/",
            "fs-0123456789abcdef0/subdir/01",
            "fs-0123456789abcdef0/subdir/4294967296",
            "fs-0123456789abcdef0/subdir/+1",
            "fs-0123456789abcdef0/subdir/1/2",
            "fs-0123456789abcdef0/subdir/1 ",
            "fs-XYZ/subdir/1",
            "/subdir/1",
            "fs-0123456789abcdef0/other/1",
            "",
        ] {
            assert_eq!(SubdirId::parse(id), None, "{id:?}");
        }
        assert!(SubdirId::is_subdir_like("fs-x/subdir/y"));
        assert!(!SubdirId::is_subdir_like("fs-0123456789abcdef0"));
    }
}
