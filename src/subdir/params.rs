//! A subdirectory StorageClass's parameters, parsed once into [`SubdirParams`].
//!
//! `provisioningMode` chooses between the two kinds of StorageClass ([`Mode`]); a
//! `subdirectory` class takes only the keys in [`KEYS`] (and the external-provisioner's
//! `csi.storage.k8s.io/` metadata). A file system key in a subdirectory class is refused with
//! why (the file system exists already), any other key as unknown: both name the key.

use std::collections::HashMap;

use super::pattern::{BasePath, DEFAULT_PATTERN, Pattern};
use super::registry::OnDelete;
use crate::fsx::is_file_system_id;
use crate::provision::params::{KEYS as FILE_SYSTEM_KEYS, ParamError, RESERVED_PREFIX, parse_bool};
use crate::text::Shown;

pub const PROVISIONING_MODE: &str = "provisioningMode";
pub const FILE_SYSTEM_ID: &str = "fileSystemId";
pub const BASE_PATH: &str = "basePath";
pub const SUB_PATH_PATTERN: &str = "subPathPattern";
pub const ENSURE_UNIQUE_DIRECTORY: &str = "ensureUniqueDirectory";
pub const UID: &str = "uid";
pub const GID: &str = "gid";
pub const DIRECTORY_PERMS: &str = "directoryPerms";
pub const ON_DELETE: &str = "onDelete";
pub const PROJECT_QUOTA: &str = "projectQuota";

/// The keys of a subdirectory class, with what each takes and its default (for messages and
/// the README).
pub const KEYS: &[(&str, &str, &str)] = &[
    (PROVISIONING_MODE, "`fileSystem` or `subdirectory`", "`fileSystem`"),
    (FILE_SYSTEM_ID, "the id of an existing FSx for Lustre file system (`fs-…`)", "required"),
    (BASE_PATH, "an absolute path in the file system", "`/`"),
    (
        SUB_PATH_PATTERN,
        "a relative path of text and `${.PVC.namespace}`, `${.PVC.name}`, `${.PV.name}`",
        "`${.PV.name}`",
    ),
    (ENSURE_UNIQUE_DIRECTORY, "`true` or `false`", "`true`"),
    (UID, "the owner of the new directory, 0 to 4294967294", "`0`"),
    (GID, "its group, 0 to 4294967294", "`0`"),
    (DIRECTORY_PERMS, "its mode, in octal (`0770`, `2770`)", "`0770`"),
    (ON_DELETE, "`delete`, `retain` or `archive`", "`delete`"),
    (PROJECT_QUOTA, "`true` or `false`", "`true`"),
];

/// The default mode: the owner and the group, nobody else. Claims of one class share a file
/// system; a directory others can read would show one tenant's data to the next.
pub const DEFAULT_PERMS: u32 = 0o770;

/// What a StorageClass provisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One file system per volume (the default, and the Go driver's only mode).
    FileSystem,
    /// A directory per volume on an existing file system.
    Subdirectory,
}

/// The provisioning mode a StorageClass asks for.
pub fn mode(raw: &HashMap<String, String>) -> Result<Mode, ParamError> {
    match raw.get(PROVISIONING_MODE).map(|v| v.trim()) {
        None | Some("" | "fileSystem") => Ok(Mode::FileSystem),
        Some("subdirectory") => Ok(Mode::Subdirectory),
        Some(other) => Err(err(PROVISIONING_MODE, format!("{} is not fileSystem or subdirectory", Shown(other)))),
    }
}

/// A subdirectory StorageClass, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubdirParams {
    pub file_system_id: String,
    pub base: BasePath,
    pub pattern: Pattern,
    pub unique: bool,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub on_delete: OnDelete,
    pub quota: bool,
    /// The external-provisioner's `csi.storage.k8s.io/` metadata (the pattern's values).
    pub metadata: HashMap<String, String>,
}

fn err(key: &str, message: impl Into<String>) -> ParamError {
    ParamError { key: key.to_string(), message: message.into() }
}

fn parse_id(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        // u32::MAX is "no change" to chown(2).
        Ok(n) if n < u32::MAX && (value == "0" || !value.starts_with('0')) => Ok(n),
        _ => Err(format!("{} is not a number from 0 to 4294967294", Shown(value))),
    }
}

/// `0770`, `770`, `2770`, `02770`: octal, at most 0o7777.
fn parse_perms(value: &str) -> Result<u32, String> {
    let digits = value.strip_prefix("0o").unwrap_or(value);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if (3..=5).contains(&digits.len()) && m <= 0o7777 => Ok(m),
        _ => Err(format!("{} is not an octal mode such as 0770 or 2770", Shown(value))),
    }
}

impl SubdirParams {
    /// Parses a subdirectory StorageClass ([`mode`] said `subdirectory`).
    pub fn parse(raw: &HashMap<String, String>) -> Result<Self, ParamError> {
        let mut names: Vec<&String> = raw.keys().collect();
        names.sort();
        let mut file_system_id = None;
        let mut base = BasePath::default();
        let mut pattern = None;
        let mut p = (true, 0, 0, DEFAULT_PERMS, OnDelete::Delete, true);
        let mut metadata = HashMap::new();
        for name in names {
            let value = raw[name].trim();
            if name.starts_with(RESERVED_PREFIX) {
                metadata.insert(name.clone(), value.to_string());
                continue;
            }
            let bad = |m: String| err(name, m);
            match name.as_str() {
                PROVISIONING_MODE => {}
                FILE_SYSTEM_ID => {
                    if !is_file_system_id(value) {
                        return Err(bad(format!(
                            "{} is not a file system id such as fs-0123456789abcdef0",
                            Shown(value)
                        )));
                    }
                    file_system_id = Some(value.to_string());
                }
                BASE_PATH => base = BasePath::parse(value).map_err(|e| bad(e.to_string()))?,
                SUB_PATH_PATTERN => pattern = Some(Pattern::parse(value).map_err(|e| bad(e.to_string()))?),
                ENSURE_UNIQUE_DIRECTORY => p.0 = parse_bool(value).map_err(bad)?,
                UID => p.1 = parse_id(value).map_err(bad)?,
                GID => p.2 = parse_id(value).map_err(bad)?,
                DIRECTORY_PERMS => p.3 = parse_perms(value).map_err(bad)?,
                ON_DELETE => {
                    p.4 = match value {
                        "delete" => OnDelete::Delete,
                        "retain" => OnDelete::Retain,
                        "archive" => OnDelete::Archive,
                        _ => return Err(bad(format!("{} is not delete, retain or archive", Shown(value)))),
                    }
                }
                PROJECT_QUOTA => p.5 = parse_bool(value).map_err(bad)?,
                other if FILE_SYSTEM_KEYS.iter().any(|k| k.name == other) => {
                    return Err(bad(format!(
                        "does not apply with {PROVISIONING_MODE}: subdirectory: the file system {} exists already, and its settings are its own",
                        file_system_id.as_deref().map_or(FILE_SYSTEM_ID.to_string(), |id| id.to_string())
                    )));
                }
                _ => {
                    let accepted: Vec<&str> = KEYS.iter().map(|k| k.0).collect();
                    return Err(bad(format!("unknown key; a subdirectory StorageClass takes {}", accepted.join(", "))));
                }
            }
        }
        let Some(file_system_id) = file_system_id else {
            return Err(err(
                FILE_SYSTEM_ID,
                "is required with provisioningMode: subdirectory: the id of the file system the directories are made on",
            ));
        };
        let pattern = match pattern {
            Some(p) => p,
            None => Pattern::parse(DEFAULT_PATTERN).map_err(|e| err(SUB_PATH_PATTERN, e.to_string()))?,
        };
        let (unique, uid, gid, mode, on_delete, quota) = p;
        Ok(Self { file_system_id, base, pattern, unique, uid, gid, mode, on_delete, quota, metadata })
    }

    /// The claim's directory, relative to the file system's root, for the volume `name`.
    pub fn directory(&self, name: &str) -> Result<String, ParamError> {
        let suffix = self.unique.then(|| super::pattern::unique_suffix(name));
        let mut metadata = self.metadata.clone();
        // The PV's name is the volume name whether or not the provisioner passed it.
        metadata.entry("csi.storage.k8s.io/pv/name".to_string()).or_insert_with(|| name.to_string());
        self.pattern.expand(&self.base, &metadata, suffix.as_deref()).map_err(|e| err(SUB_PATH_PATTERN, e.to_string()))
    }

    /// The claim as `namespace/name`, when the provisioner said.
    pub fn claim(&self) -> Option<String> {
        let ns = self.metadata.get("csi.storage.k8s.io/pvc/namespace")?;
        let name = self.metadata.get("csi.storage.k8s.io/pvc/name")?;
        Some(format!("{ns}/{name}"))
    }
}

/// The README's table of subdirectory keys, from [`KEYS`].
#[cfg(test)]
pub fn reference_table() -> String {
    let mut out = String::from("| key | values | default |\n|---|---|---|\n");
    for (name, values, default) in KEYS {
        out.push_str(&format!("| `{name}` | {values} | {default} |\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's subdirectory key reference is this table; regenerate it from here.
    #[test]
    fn the_readme_table_is_the_key_table() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let table = reference_table();
        assert!(readme.contains(&table), "README.md's subdirectory key table differs; replace it with:\n\n{table}");
    }

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn class(extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut m = map(&[
            ("provisioningMode", "subdirectory"),
            ("fileSystemId", "fs-0123456789abcdef0"),
            ("csi.storage.k8s.io/pvc/namespace", "team-a"),
            ("csi.storage.k8s.io/pvc/name", "scratch"),
            ("csi.storage.k8s.io/pv/name", "pvc-1"),
        ]);
        m.extend(map(extra));
        m
    }

    #[test]
    fn the_issue_class_parses_with_its_defaults() {
        assert_eq!(mode(&map(&[])).unwrap(), Mode::FileSystem);
        assert_eq!(mode(&map(&[("provisioningMode", "fileSystem")])).unwrap(), Mode::FileSystem);
        assert_eq!(mode(&class(&[])).unwrap(), Mode::Subdirectory);
        assert_eq!(mode(&map(&[("provisioningMode", "dir")])).unwrap_err().key, "provisioningMode");

        let p = SubdirParams::parse(&class(&[])).unwrap();
        assert_eq!((p.unique, p.uid, p.gid, p.mode, p.on_delete, p.quota), (true, 0, 0, 0o770, OnDelete::Delete, true));
        assert_eq!(p.directory("pvc-1").unwrap(), format!("pvc-1{}", super::super::pattern::unique_suffix("pvc-1")));
        assert_eq!(p.claim().as_deref(), Some("team-a/scratch"));

        let p = SubdirParams::parse(&class(&[
            ("basePath", "/k8s"),
            ("subPathPattern", "${.PVC.namespace}/${.PVC.name}"),
            ("ensureUniqueDirectory", "false"),
            ("uid", "1000"),
            ("gid", "1000"),
            ("directoryPerms", "2770"),
            ("onDelete", "archive"),
            ("projectQuota", "false"),
        ]))
        .unwrap();
        assert_eq!(p.directory("pvc-1").unwrap(), "k8s/team-a/scratch");
        assert_eq!((p.uid, p.gid, p.mode, p.on_delete, p.quota), (1000, 1000, 0o2770, OnDelete::Archive, false));
    }

    #[test]
    fn bad_values_and_keys_are_named() {
        for (key, value) in [
            ("fileSystemId", "fs-XYZ"),
            ("basePath", "k8s"),
            ("basePath", "/k8s/../etc"),
            ("subPathPattern", "../x"),
            ("subPathPattern", "/abs"),
            ("subPathPattern", "${.PVC.uid}"),
            ("uid", "-1"),
            ("uid", "4294967295"),
            ("gid", "1e3"),
            ("gid", "01"),
            ("directoryPerms", "0778"),
            ("directoryPerms", "rwx"),
            ("directoryPerms", "77"),
            ("directoryPerms", "17777"),
            ("onDelete", "Delete"),
            ("projectQuota", "yes"),
            ("ensureUniqueDirectory", "1"),
            ("subnetId", "subnet-0123456789abcdef0"),
            ("deploymentType", "SCRATCH_2"),
            ("subPath", "x"),
        ] {
            let e = SubdirParams::parse(&class(&[(key, value)])).unwrap_err();
            assert_eq!(e.key, key, "{key}={value}: {e}");
        }
        let e = SubdirParams::parse(&class(&[("subnetId", "subnet-0123456789abcdef0")])).unwrap_err();
        assert!(e.message.contains("fs-0123456789abcdef0 exists already"), "{e}");
        let mut m = class(&[]);
        m.remove("fileSystemId");
        assert_eq!(SubdirParams::parse(&m).unwrap_err().key, "fileSystemId");
    }
}
