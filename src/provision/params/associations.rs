//! `dataRepositoryAssociations`: several S3 links per file system, as a JSON list in one
//! StorageClass value (users write it as a YAML block string).
//!
//! Each entry becomes one `CreateDataRepositoryAssociation`. FSx's rules are checked here,
//! before any call: 1 to 8 entries; every file system path clean, absolute and unique, none
//! inside another (`/` only alone); every S3 path a valid, unique `s3://bucket[/prefix]`; the
//! chunk size 1-512000 MiB; events any subset of `NEW`, `CHANGED`, `DELETED`. The value is
//! bounded before it is parsed, and unknown fields are refused by name.

use serde::Deserialize;

use super::{check_fs_path, s3_bucket, same_s3_path};
use crate::fsx::EventType;
use crate::text::Shown;

/// FSx's limit on associations per file system.
pub const MAX_ASSOCIATIONS: usize = 8;

/// The longest value accepted: 8 entries of FSx's longest paths fit with room to spare.
const MAX_JSON_BYTES: usize = 80 * 1024;

/// One entry, as written in the StorageClass.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Entry {
    file_system_path: String,
    data_repository_path: String,
    #[serde(default)]
    imported_file_chunk_size: Option<i64>,
    #[serde(default, rename = "batchImportMetaDataOnCreate")]
    batch_import_metadata_on_create: Option<bool>,
    #[serde(default)]
    auto_import_events: Option<Vec<String>>,
    #[serde(default)]
    auto_export_events: Option<Vec<String>>,
}

/// One association a StorageClass asks for, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociationParams {
    pub file_system_path: String,
    pub data_repository_path: String,
    pub imported_file_chunk_size: Option<i32>,
    pub batch_import_metadata_on_create: bool,
    pub auto_import_events: Vec<EventType>,
    pub auto_export_events: Vec<EventType>,
}

fn events(list: Option<Vec<String>>, at: &str) -> Result<Vec<EventType>, String> {
    let mut out = Vec::new();
    for e in list.unwrap_or_default() {
        let event: EventType = e.parse().map_err(|_| format!("{at}: {} is not NEW, CHANGED or DELETED", Shown(&e)))?;
        if out.contains(&event) {
            return Err(format!("{at}: {event} is listed twice"));
        }
        out.push(event);
    }
    Ok(out)
}

/// True if `inner` is `outer` or a directory under it.
fn within(inner: &str, outer: &str) -> bool {
    outer == "/" || inner == outer || inner.strip_prefix(outer).is_some_and(|rest| rest.starts_with('/'))
}

/// Parses and checks the list. The message names the entry (by its position) and the field.
pub fn parse(value: &str) -> Result<Vec<AssociationParams>, String> {
    let shape = "a JSON list of 1-8 objects {\"fileSystemPath\": \"/path\", \"dataRepositoryPath\": \"s3://bucket/prefix\", \"importedFileChunkSize\"?: MiB, \"batchImportMetaDataOnCreate\"?: true|false, \"autoImportEvents\"?: [\"NEW\",\"CHANGED\",\"DELETED\"], \"autoExportEvents\"?: [...]}";
    if value.len() > MAX_JSON_BYTES {
        return Err(format!("is {} bytes; at most {MAX_JSON_BYTES} are accepted ({shape})", value.len()));
    }
    // serde_json's message names the field and the position; Shown escapes and bounds it.
    let entries: Vec<Entry> =
        serde_json::from_str(value).map_err(|e| format!("is not {shape}: {}", Shown(&e.to_string())))?;
    if entries.is_empty() || entries.len() > MAX_ASSOCIATIONS {
        return Err(format!(
            "has {} entries; FSx allows 1 to {MAX_ASSOCIATIONS} data repository associations per file system",
            entries.len()
        ));
    }
    let mut out: Vec<AssociationParams> = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let at = format!("entry {}", i + 1);
        check_fs_path(&e.file_system_path).map_err(|m| format!("{at}: fileSystemPath {m}"))?;
        s3_bucket("dataRepositoryPath", &e.data_repository_path)
            .map_err(|err| format!("{at}: dataRepositoryPath {}", err.message))?;
        let chunk = match e.imported_file_chunk_size {
            None => None,
            Some(n) if (1..=512_000).contains(&n) => Some(n as i32),
            Some(n) => {
                return Err(format!("{at}: importedFileChunkSize {n} is not a whole number from 1 to 512000 (MiB)"));
            }
        };
        let entry = AssociationParams {
            auto_import_events: events(e.auto_import_events, &format!("{at}: autoImportEvents"))?,
            auto_export_events: events(e.auto_export_events, &format!("{at}: autoExportEvents"))?,
            file_system_path: e.file_system_path,
            data_repository_path: e.data_repository_path,
            imported_file_chunk_size: chunk,
            batch_import_metadata_on_create: e.batch_import_metadata_on_create.unwrap_or(false),
        };
        for (j, other) in out.iter().enumerate() {
            let (a, b) = (&entry.file_system_path, &other.file_system_path);
            if within(a, b) || within(b, a) {
                return Err(format!(
                    "{at}: fileSystemPath {} overlaps entry {}'s {} (FSx needs separate directories, and / only when it is the only association)",
                    Shown(a),
                    j + 1,
                    Shown(b)
                ));
            }
            if same_s3_path(&entry.data_repository_path, &other.data_repository_path) {
                return Err(format!(
                    "{at}: dataRepositoryPath {} is also entry {}'s (FSx links each S3 path once)",
                    Shown(&entry.data_repository_path),
                    j + 1
                ));
            }
        }
        out.push(entry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_links_with_event_subsets() {
        let v = r#"[
            {"fileSystemPath": "/train", "dataRepositoryPath": "s3://data/train", "autoImportEvents": ["DELETED"]},
            {"fileSystemPath": "/out", "dataRepositoryPath": "s3://data/out/", "autoExportEvents": ["NEW", "CHANGED"],
             "importedFileChunkSize": 2048, "batchImportMetaDataOnCreate": true}
        ]"#;
        let a = parse(v).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].auto_import_events, vec![EventType::Deleted]);
        assert!(a[0].auto_export_events.is_empty());
        assert_eq!(a[1].auto_export_events, vec![EventType::New, EventType::Changed]);
        assert_eq!((a[1].imported_file_chunk_size, a[1].batch_import_metadata_on_create), (Some(2048), true));
    }

    #[test]
    fn fsx_refusals_are_caught_and_named() {
        let one = |fs: &str, s3: &str| format!(r#"{{"fileSystemPath": "{fs}", "dataRepositoryPath": "{s3}"}}"#);
        let list = |items: &[String]| format!("[{}]", items.join(","));
        for (bad, says) in [
            ("[]".to_string(), "1 to 8"),
            (list(&(0..9).map(|i| one(&format!("/d{i}"), &format!("s3://bkt/{i}"))).collect::<Vec<_>>()), "9 entries"),
            (list(&[one("/a", "s3://bkt/a"), one("/a/b", "s3://bkt/c")]), "overlaps entry 1"),
            (list(&[one("/", "s3://bkt/a"), one("/x", "s3://bkt/c")]), "overlaps"),
            (list(&[one("/a", "s3://bkt/a"), one("/b", "s3://bkt/a/")]), "also entry 1"),
            (list(&[one("a", "s3://bkt/a")]), "entry 1: fileSystemPath"),
            (list(&[one("/a/../b", "s3://bkt/a")]), "clean absolute path"),
            (list(&[one("/a", "b/a")]), "entry 1: dataRepositoryPath"),
            (r#"[{"fileSystemPath": "/a", "dataRepositoryPath": "s3://bkt/a", "extra": 1}]"#.into(), "unknown field"),
            (r#"[{"fileSystemPath": "/a"}]"#.into(), "missing field"),
            (
                r#"[{"fileSystemPath": "/a", "dataRepositoryPath": "s3://bkt/a", "autoImportEvents": ["NEW","NEW"]}]"#
                    .into(),
                "twice",
            ),
            (
                r#"[{"fileSystemPath": "/a", "dataRepositoryPath": "s3://bkt/a", "autoExportEvents": ["MOVED"]}]"#
                    .into(),
                "MOVED",
            ),
            (
                r#"[{"fileSystemPath": "/a", "dataRepositoryPath": "s3://bkt/a", "importedFileChunkSize": 0}]"#.into(),
                "importedFileChunkSize",
            ),
            ("{".into(), "is not a JSON list"),
            ("[".repeat(10_000), "is not a JSON list"),
            ("x".repeat(MAX_JSON_BYTES + 1), "bytes"),
        ] {
            let e = parse(&bad).unwrap_err();
            assert!(e.contains(says), "{says:?} not in {e:?}");
            assert!(e.len() < 1200, "{}", e.len());
        }
        // A serde message cut mid-character must not panic (a name of multibyte characters).
        let field = "é".repeat(300);
        let e = parse(&format!(r#"[{{"fileSystemPath": "/a", "dataRepositoryPath": "s3://bkt/a", "xy{field}": 1}}]"#))
            .unwrap_err();
        assert!(e.contains("unknown field") && e.len() < 1200, "{e}");
        // Siblings with a shared prefix do not overlap.
        parse(&list(&[one("/data", "s3://bkt/a"), one("/data2", "s3://bkt/c")])).unwrap();
    }
}
