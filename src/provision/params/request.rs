//! What a StorageClass asks of FSx: the `CreateFileSystem` and
//! `CreateDataRepositoryAssociation` requests, the file system's tags, and the comparison with
//! a file system that already exists for the name.

use super::keys::EXTRA_TAGS;
use super::{AssociationParams, KEYS, MAX_TAGS, ParamError, StorageClassParams, err};
use crate::fsx::{
    AssociationSpec, AutoImportPolicy, CreateSpec, DeploymentType, EventType, FINAL_BACKUP_TAG,
    FINAL_BACKUP_TAG_PREFIX, FileSystem, LustreSettings, VOLUME_NAME_TAG,
};
use crate::provision::token::client_request_token;

impl StorageClassParams {
    /// `Some(())` when S3 is linked through `LustreConfiguration` (every type but
    /// PERSISTENT_2).
    pub(super) fn legacy_s3(&self) -> Option<()> {
        (self.deployment_type != DeploymentType::Persistent2).then_some(())
    }

    /// True when S3 is linked through data repository associations: PERSISTENT_2 with
    /// `s3ImportPath`, or `dataRepositoryAssociations`.
    pub fn uses_association(&self) -> bool {
        (self.deployment_type == DeploymentType::Persistent2 && self.s3_import_path.is_some())
            || !self.associations.is_empty()
    }

    /// The `CreateDataRepositoryAssociation` requests for file system `fs_id`, one per S3
    /// link, each with its own deterministic token (from the file system and the path, so a
    /// retry or a restart sends the same one).
    pub fn association_specs(&self, fs_id: &str, tags: &[(String, String)]) -> Vec<AssociationSpec> {
        fn events(p: Option<AutoImportPolicy>) -> Vec<EventType> {
            match p {
                None | Some(AutoImportPolicy::None) => vec![],
                Some(AutoImportPolicy::New) => vec![EventType::New],
                Some(AutoImportPolicy::NewChanged) => vec![EventType::New, EventType::Changed],
                Some(AutoImportPolicy::NewChangedDeleted) => {
                    vec![EventType::New, EventType::Changed, EventType::Deleted]
                }
            }
        }
        let spec = |token: String, a: AssociationParams| AssociationSpec {
            client_request_token: token,
            file_system_id: fs_id.to_string(),
            file_system_path: a.file_system_path,
            data_repository_path: a.data_repository_path,
            batch_import_metadata_on_create: a.batch_import_metadata_on_create,
            imported_file_chunk_size: a.imported_file_chunk_size,
            auto_import_events: a.auto_import_events,
            auto_export_events: a.auto_export_events,
            tags: tags.to_vec(),
        };
        if let Some(import) =
            self.s3_import_path.clone().filter(|_| self.deployment_type == DeploymentType::Persistent2)
        {
            // The one association of s3ImportPath keeps the token it always had.
            let a = AssociationParams {
                file_system_path: self.file_system_path.clone().unwrap_or_else(|| "/".to_string()),
                data_repository_path: import,
                imported_file_chunk_size: self.imported_file_chunk_size,
                batch_import_metadata_on_create: self.batch_import_metadata_on_create.unwrap_or(false),
                auto_import_events: self.auto_import_events.clone().unwrap_or_else(|| events(self.auto_import_policy)),
                auto_export_events: self.auto_export_events.clone().unwrap_or_else(|| events(self.auto_export_policy)),
            };
            return vec![spec(client_request_token(&format!("{fs_id}.dra"), 0), a)];
        }
        self.associations
            .iter()
            .map(|a| spec(client_request_token(&format!("{fs_id}.dra:{}", a.file_system_path), 0), a.clone()))
            .collect()
    }

    /// The tags of a new file system: driver-wide tags (`--extra-tags`), then the Kubernetes
    /// ones, then the StorageClass's (later ones win), with the `CSIVolumeName` tag first so
    /// that nothing can override it, and last the final backup's record
    /// ([`FINAL_BACKUP_TAG`], its tags under [`FINAL_BACKUP_TAG_PREFIX`]), read back by
    /// DeleteVolume. More than FSx's [`MAX_TAGS`] is refused, never cut.
    pub fn tags(&self, name: &str, driver_tags: &[(String, String)]) -> Result<Vec<(String, String)>, ParamError> {
        let mut tags: Vec<(String, String)> = vec![(VOLUME_NAME_TAG.to_string(), name.to_string())];
        let final_backup: Vec<(String, String)> = if self.final_backup_on_delete {
            std::iter::once((FINAL_BACKUP_TAG.to_string(), "true".to_string()))
                .chain(self.final_backup_tags.iter().map(|(k, v)| (format!("{FINAL_BACKUP_TAG_PREFIX}{k}"), v.clone())))
                .collect()
        } else {
            Vec::new()
        };
        let sources = [driver_tags, &self.kubernetes_tags, &self.extra_tags, &final_backup];
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
                    "the file system would carry {} tags ({VOLUME_NAME_TAG}, {} from the driver's --extra-tags, {} Kubernetes tags, {} from {EXTRA_TAGS}, {} recording the final backup); FSx allows at most {MAX_TAGS}: remove some",
                    tags.len(),
                    driver_tags.len(),
                    self.kubernetes_tags.len(),
                    self.extra_tags.len(),
                    final_backup.len()
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
