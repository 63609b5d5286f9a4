//! What a StorageClass asks of FSx: the `CreateFileSystem` and
//! `CreateDataRepositoryAssociation` requests, the file system's tags, and the comparison with
//! a file system that already exists for the name.

use super::keys::EXTRA_TAGS;
use super::{KEYS, MAX_TAGS, ParamError, StorageClassParams, err};
use crate::fsx::{
    AssociationSpec, AutoImportPolicy, CreateSpec, DeploymentType, FileSystem, LustreSettings, VOLUME_NAME_TAG,
};

impl StorageClassParams {
    /// `Some(())` when S3 is linked through `LustreConfiguration` (every type but
    /// PERSISTENT_2).
    pub(super) fn legacy_s3(&self) -> Option<()> {
        (self.deployment_type != DeploymentType::Persistent2).then_some(())
    }

    /// True when S3 is linked through a data repository association (PERSISTENT_2 with
    /// `s3ImportPath`).
    pub fn uses_association(&self) -> bool {
        self.deployment_type == DeploymentType::Persistent2 && self.s3_import_path.is_some()
    }

    /// The `CreateDataRepositoryAssociation` request for file system `fs_id`, if this
    /// StorageClass links S3 through an association.
    pub fn association_spec(&self, fs_id: &str, token: String, tags: &[(String, String)]) -> Option<AssociationSpec> {
        if !self.uses_association() {
            return None;
        }
        fn events(p: Option<AutoImportPolicy>) -> Vec<&'static str> {
            match p {
                None | Some(AutoImportPolicy::None) => vec![],
                Some(AutoImportPolicy::New) => vec!["NEW"],
                Some(AutoImportPolicy::NewChanged) => vec!["NEW", "CHANGED"],
                Some(AutoImportPolicy::NewChangedDeleted) => vec!["NEW", "CHANGED", "DELETED"],
            }
        }
        Some(AssociationSpec {
            client_request_token: token,
            file_system_id: fs_id.to_string(),
            file_system_path: self.file_system_path.clone().unwrap_or_else(|| "/".to_string()),
            data_repository_path: self.s3_import_path.clone()?,
            batch_import_metadata_on_create: self.batch_import_metadata_on_create.unwrap_or(false),
            imported_file_chunk_size: self.imported_file_chunk_size,
            auto_import_events: events(self.auto_import_policy),
            auto_export_events: events(self.auto_export_policy),
            tags: tags.to_vec(),
        })
    }

    /// The tags of a new file system: driver-wide tags (`--extra-tags`), then the Kubernetes
    /// ones, then the StorageClass's (later ones win), with the `CSIVolumeName` tag first so
    /// that nothing can override it. More than FSx's [`MAX_TAGS`] is refused, never cut.
    pub fn tags(&self, name: &str, driver_tags: &[(String, String)]) -> Result<Vec<(String, String)>, ParamError> {
        let mut tags: Vec<(String, String)> = vec![(VOLUME_NAME_TAG.to_string(), name.to_string())];
        let sources = [driver_tags, &self.kubernetes_tags, &self.extra_tags];
        for (k, v) in sources.into_iter().flatten().filter(|(k, _)| k != VOLUME_NAME_TAG) {
            match tags.iter_mut().find(|(key, _)| key == k) {
                Some(slot) => slot.1 = v.clone(),
                None => tags.push((k.clone(), v.clone())),
            }
        }
        if tags.len() > MAX_TAGS {
            return Err(err(
                EXTRA_TAGS,
                format!(
                    "the file system would carry {} tags ({VOLUME_NAME_TAG}, {} from the driver's --extra-tags, {} Kubernetes tags, {} from {EXTRA_TAGS}); FSx allows at most {MAX_TAGS}: remove some",
                    tags.len(),
                    driver_tags.len(),
                    self.kubernetes_tags.len(),
                    self.extra_tags.len()
                ),
            ));
        }
        Ok(tags)
    }

    /// The `CreateFileSystem` request for this StorageClass, with `tags` from
    /// [`StorageClassParams::tags`].
    pub fn create_spec(&self, capacity_gib: i32, token: String, tags: Vec<(String, String)>) -> CreateSpec {
        let legacy = self.legacy_s3();
        CreateSpec {
            client_request_token: token,
            capacity_gib,
            subnet_id: self.subnet_id.clone(),
            security_group_ids: self.security_group_ids.clone(),
            tags,
            storage_type: Some(self.storage_type),
            kms_key_id: self.kms_key_id.clone(),
            file_system_type_version: self.file_system_type_version.clone(),
            lustre: LustreSettings {
                deployment_type: Some(self.deployment_type),
                import_path: legacy.and(self.s3_import_path.clone()),
                export_path: legacy.and(self.s3_export_path.clone()),
                auto_import_policy: legacy.and(self.auto_import_policy),
                imported_file_chunk_size: legacy.and(self.imported_file_chunk_size),
                ..self.lustre.clone()
            },
        }
    }

    /// Why an existing file system does not match these parameters, if it does not: every
    /// key's comparison (in [`super::KEYS`]). Only what `DescribeFileSystems` shows is
    /// compared; what it does not show (security groups, maintenance windows, tags) cannot
    /// differ within FSx's token window, where FSx itself answers `IncompatibleParameterError`.
    pub fn mismatch(&self, fs: &FileSystem) -> Option<String> {
        let diffs: Vec<String> = KEYS
            .iter()
            .filter_map(|key| {
                let (want, have) = (key.compare?)(self, fs)?;
                (want != have).then(|| format!("{} is {have}, requested {want}", key.name))
            })
            .collect();
        (!diffs.is_empty()).then(|| diffs.join("; "))
    }
}
