//! Every StorageClass key, described once.
//!
//! A key's entry says what values it takes (for messages and the README), its default, which
//! deployment types take it (checked for every key the same way), whether FSx can change it in
//! place later (`UpdateFileSystem`, for ControllerModifyVolume), and how its value is read into
//! [`StorageClassParams`]. Parsing, the applicability rule and the README's reference table
//! (checked by a test) all come from this table.

use super::{
    StorageClassParams, associations, check_fs_path, is_daily_time, is_hex_id, is_weekly_time, parse_bool, parse_enum,
    parse_events, parse_int, parse_tags, s3_bucket, valid_metadata_iops,
};
use crate::fsx::{
    AutoImportPolicy, DataCompressionType, DeploymentType, DriveCacheType, FINAL_BACKUP_TAG_PREFIX, FileSystem,
    LogLevel, MetadataMode, ReadCacheSizingMode, StorageType,
};
use crate::text::Shown;

/// The keys' names, for rules and messages that name a key (a typo is then a compile error).
pub const SUBNET_ID: &str = "subnetId";
pub const SUBNET_IDS: &str = "subnetIds";
pub const ZONAL_AFFINITY: &str = "zonalAffinity";
pub const SECURITY_GROUP_IDS: &str = "securityGroupIds";
pub const DEPLOYMENT_TYPE: &str = "deploymentType";
pub const STORAGE_TYPE: &str = "storageType";
pub const PER_UNIT_STORAGE_THROUGHPUT: &str = "perUnitStorageThroughput";
pub const DRIVE_CACHE_TYPE: &str = "driveCacheType";
pub const KMS_KEY_ID: &str = "kmsKeyId";
pub const S3_IMPORT_PATH: &str = "s3ImportPath";
pub const S3_EXPORT_PATH: &str = "s3ExportPath";
pub const AUTO_IMPORT_POLICY: &str = "autoImportPolicy";
pub const AUTO_EXPORT_POLICY: &str = "autoExportPolicy";
pub const IMPORTED_FILE_CHUNK_SIZE: &str = "importedFileChunkSize";
pub const FILE_SYSTEM_PATH: &str = "fileSystemPath";
pub const BATCH_IMPORT_META_DATA_ON_CREATE: &str = "batchImportMetaDataOnCreate";
pub const DATA_COMPRESSION_TYPE: &str = "dataCompressionType";
pub const WEEKLY_MAINTENANCE_START_TIME: &str = "weeklyMaintenanceStartTime";
pub const DAILY_AUTOMATIC_BACKUP_START_TIME: &str = "dailyAutomaticBackupStartTime";
pub const AUTOMATIC_BACKUP_RETENTION_DAYS: &str = "automaticBackupRetentionDays";
pub const COPY_TAGS_TO_BACKUPS: &str = "copyTagsToBackups";
pub const FILE_SYSTEM_TYPE_VERSION: &str = "fileSystemTypeVersion";
pub const EXTRA_TAGS: &str = "extraTags";
pub const EFA_ENABLED: &str = "efaEnabled";
pub const METADATA_CONFIGURATION_MODE: &str = "metadataConfigurationMode";
pub const METADATA_IOPS: &str = "metadataIops";
pub const ROOT_SQUASH: &str = "rootSquash";
pub const NO_SQUASH_NIDS: &str = "noSquashNids";
pub const THROUGHPUT_CAPACITY: &str = "throughputCapacity";
pub const DATA_READ_CACHE_SIZING_MODE: &str = "dataReadCacheSizingMode";
pub const DATA_READ_CACHE_SIZE_GIB: &str = "dataReadCacheSizeGiB";
pub const LUSTRE_LOG_LEVEL: &str = "lustreLogLevel";
pub const LUSTRE_LOG_DESTINATION: &str = "lustreLogDestination";
pub const DATA_REPOSITORY_ASSOCIATIONS: &str = "dataRepositoryAssociations";
pub const AUTO_IMPORT_EVENTS: &str = "autoImportEvents";
pub const AUTO_EXPORT_EVENTS: &str = "autoExportEvents";
pub const FINAL_BACKUP_ON_DELETE: &str = "finalBackupOnDelete";
pub const FINAL_BACKUP_TAGS: &str = "finalBackupTags";

/// Which deployment types take a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// Every deployment type.
    All,
    /// PERSISTENT_1 and PERSISTENT_2 (scratch file systems have no backups and use an
    /// FSx-managed key).
    Persistent,
    /// PERSISTENT_2 only.
    Persistent2,
    /// Every type but SCRATCH_1 (data repository associations).
    NotScratch1,
}

impl Takes {
    /// True if `deployment` takes the key.
    pub fn allows(self, deployment: DeploymentType) -> bool {
        match self {
            Takes::All => true,
            Takes::Persistent => !deployment.is_scratch(),
            Takes::Persistent2 => deployment == DeploymentType::Persistent2,
            Takes::NotScratch1 => deployment != DeploymentType::Scratch1,
        }
    }

    /// The deployment types, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Takes::All => "every deployment type",
            Takes::Persistent => "PERSISTENT_1 or PERSISTENT_2",
            Takes::Persistent2 => "PERSISTENT_2",
            Takes::NotScratch1 => "SCRATCH_2, PERSISTENT_1 or PERSISTENT_2",
        }
    }
}

/// One StorageClass key.
pub struct Key {
    /// The key, as in the StorageClass (the Go driver's spelling).
    pub name: &'static str,
    /// What a value looks like (Markdown, for the README).
    pub values: &'static str,
    /// What not setting it means (Markdown).
    pub default: &'static str,
    /// Anything else a user must know (Markdown).
    pub notes: &'static str,
    /// Which deployment types take it.
    pub takes: Takes,
    /// FSx can change it on an existing file system (`UpdateFileSystem`).
    pub mutable: bool,
    /// Reads a non-empty value into the parameters; the message says what is wrong and what
    /// would be accepted (the key is added by the caller).
    pub(super) set: fn(&mut StorageClassParams, &str) -> Result<(), String>,
    /// For keys `DescribeFileSystems` shows: (requested, existing) as comparable text, when
    /// they can be compared; an existing file system for the name must match.
    pub(super) compare: Option<Compare>,
}

/// How a key compares a request with an existing file system.
pub type Compare = fn(&StorageClassParams, &FileSystem) -> Option<(String, String)>;

/// A comma-separated list of AWS ids (`prefix` and 8-17 lowercase hex digits, at most
/// `max_len` bytes), each checked; the message names the first that is not one.
fn id_list<'v>(v: &'v str, prefix: &str, max_len: usize, what: &str) -> Result<Vec<&'v str>, String> {
    v.split(',')
        .map(str::trim)
        .map(|id| {
            if is_hex_id(id, prefix, max_len) {
                Ok(id)
            } else {
                Err(format!(
                    "{} is not a {what} ({prefix} followed by 8-17 lowercase hex digits); give a comma-separated list",
                    Shown(id)
                ))
            }
        })
        .collect()
}

/// An existing file system's subnet must be one of the class's (whichever zone it went to).
fn compare_subnet(p: &StorageClassParams, fs: &FileSystem) -> Option<(String, String)> {
    let have = fs.subnet_ids.first()?;
    let want = if p.subnet_ids.iter().any(|s| s == have) { have.clone() } else { p.subnet_ids.join(",") };
    Some((want, fs.subnet_ids.join(",")))
}

/// Compares an optional setting only when both sides have it.
fn both<T: ToString>(want: Option<T>, have: Option<T>) -> Option<(String, String)> {
    Some((want?.to_string(), have?.to_string()))
}

impl Key {
    /// The key's row in the README's reference table.
    pub fn reference_row(&self) -> String {
        let mut notes = self.notes.to_string();
        if self.takes != Takes::All {
            let only = format!("{} only", self.takes.describe());
            notes = if notes.is_empty() { only } else { format!("{only}; {notes}") };
        }
        format!("| `{}` | {} | {} | {} |", self.name, self.values, self.default, notes)
    }
}

/// The keys, in the README's order.
pub const KEYS: &[Key] = &[
    Key {
        name: SUBNET_ID,
        values: "`subnet-…`",
        default: "**required** (or `subnetIds`)",
        notes: "the file system's subnet: `subnetIds` with one subnet",
        takes: Takes::All,
        mutable: false,
        compare: Some(compare_subnet),
        set: |p, v| {
            if !is_hex_id(v, "subnet-", 24) {
                return Err(format!("{} is not a subnet id (subnet- followed by 8-17 lowercase hex digits)", Shown(v)));
            }
            p.subnet_ids = vec![v.to_string()];
            Ok(())
        },
    },
    Key {
        name: SUBNET_IDS,
        values: "`subnet-…,subnet-…`",
        default: "**required** (or `subnetId`)",
        notes: "the subnets file systems are created in, at most one per Availability Zone, all in one VPC: each file system goes into the subnet of the zone its first pod is scheduled in (`WaitForFirstConsumer`), else the first (see \"Several Availability Zones\")",
        takes: Takes::All,
        mutable: false,
        compare: None,
        set: |p, v| {
            for id in id_list(v, "subnet-", 24, "subnet id")? {
                if p.subnet_ids.iter().any(|s| s == id) {
                    return Err(format!("{id} is listed twice"));
                }
                p.subnet_ids.push(id.to_string());
            }
            if p.subnet_ids.len() > 16 {
                return Err("at most 16 subnets are allowed (one per Availability Zone)".into());
            }
            Ok(())
        },
    },
    Key {
        name: ZONAL_AFFINITY,
        values: "`true`, `false`",
        default: "`true`",
        notes: "`true`: the PV gets node affinity to its file system's zone, so pods run where the data is; `false`: pods run in any zone, paying cross-zone latency and data transfer",
        takes: Takes::All,
        mutable: false,
        compare: None,
        set: |p, v| {
            p.zonal_affinity = parse_bool(v)?;
            Ok(())
        },
    },
    Key {
        name: SECURITY_GROUP_IDS,
        values: "`sg-…,sg-…`",
        default: "none",
        notes: "must allow TCP 988 (and 1018-1023) from the nodes",
        takes: Takes::All,
        mutable: false,
        compare: None,
        set: |p, v| {
            for sg in id_list(v, "sg-", 20, "security group id")? {
                if !p.security_group_ids.iter().any(|s| s == sg) {
                    p.security_group_ids.push(sg.to_string());
                }
            }
            if p.security_group_ids.len() > 50 {
                return Err("at most 50 security groups are allowed".into());
            }
            Ok(())
        },
    },
    Key {
        name: DEPLOYMENT_TYPE,
        values: "`SCRATCH_1`, `SCRATCH_2`, `PERSISTENT_1`, `PERSISTENT_2`",
        default: "`SCRATCH_1`",
        notes: "",
        takes: Takes::All,
        mutable: false,
        compare: Some(|p, fs| {
            Some((p.deployment_type.to_string(), fs.lustre.deployment_type.map(|d| d.to_string()).unwrap_or_default()))
        }),
        set: |p, v| {
            p.deployment_type = parse_enum(v, DeploymentType::ALL)?;
            Ok(())
        },
    },
    Key {
        name: STORAGE_TYPE,
        values: "`SSD`, `HDD`, `INTELLIGENT_TIERING`",
        default: "`SSD`",
        notes: "HDD only with `PERSISTENT_1`; `INTELLIGENT_TIERING` (elastic, see below) only with `PERSISTENT_2`",
        takes: Takes::All,
        mutable: false,
        compare: Some(|p, fs| both(Some(p.storage_type), fs.storage_type)),
        set: |p, v| {
            p.storage_type = parse_enum::<StorageType>(v, StorageType::ALL)?;
            Ok(())
        },
    },
    Key {
        name: PER_UNIT_STORAGE_THROUGHPUT,
        values: "PERSISTENT_1 SSD: 50, 100, 200; PERSISTENT_1 HDD: 12, 40; PERSISTENT_2 SSD: 125, 250, 500, 1000",
        default: "",
        notes: "required for PERSISTENT SSD and HDD types, refused for SCRATCH and Intelligent-Tiering",
        takes: Takes::All,
        mutable: true,
        compare: Some(|p, fs| {
            Some((
                format!("{:?}", p.lustre.per_unit_storage_throughput),
                format!("{:?}", fs.lustre.per_unit_storage_throughput),
            ))
        }),
        set: |p, v| {
            p.lustre.per_unit_storage_throughput = Some(parse_int(v, 12, 1000)?);
            Ok(())
        },
    },
    Key {
        name: DRIVE_CACHE_TYPE,
        values: "`NONE`, `READ`",
        default: "",
        notes: "required with HDD, refused with SSD",
        takes: Takes::All,
        mutable: false,
        compare: Some(|p, fs| both(p.lustre.drive_cache_type, fs.lustre.drive_cache_type)),
        set: |p, v| {
            p.lustre.drive_cache_type = Some(parse_enum::<DriveCacheType>(v, DriveCacheType::ALL)?);
            Ok(())
        },
    },
    Key {
        name: KMS_KEY_ID,
        values: "key id, alias or ARN",
        default: "AWS-managed key",
        notes: "",
        takes: Takes::Persistent,
        mutable: false,
        compare: Some(|p, fs| {
            // FSx reports the key's ARN; a key given by ARN or bare id can be compared, an alias
            // cannot.
            let (want, have) = (p.kms_key_id.as_ref()?, fs.kms_key_id.as_ref()?);
            let same = have == want || have.ends_with(&format!("key/{want}"));
            let alias = want.starts_with("alias/") || want.contains(":alias/");
            (!same && !alias).then(|| (want.clone(), have.clone()))
        }),
        set: |p, v| {
            if v.len() > 2048 || v.chars().any(char::is_control) {
                return Err("must be a KMS key id, alias or ARN of at most 2048 characters".into());
            }
            p.kms_key_id = Some(v.to_string());
            Ok(())
        },
    },
    Key {
        name: S3_IMPORT_PATH,
        values: "`s3://bucket[/prefix]`",
        default: "",
        notes: "the S3 link; on PERSISTENT_2 through a data repository association",
        takes: Takes::All,
        mutable: false,
        compare: Some(|p, fs| {
            p.legacy_s3().and(Some((p.s3_import_path.clone()?, fs.lustre.import_path.clone().unwrap_or_default())))
        }),
        set: |p, v| {
            s3_bucket(S3_IMPORT_PATH, v).map_err(|e| e.message)?;
            p.s3_import_path = Some(v.to_string());
            Ok(())
        },
    },
    Key {
        name: S3_EXPORT_PATH,
        values: "`s3://bucket[/prefix]`",
        default: "",
        notes: "needs `s3ImportPath`; same bucket, and on PERSISTENT_2 the same path",
        takes: Takes::All,
        mutable: false,
        compare: Some(|p, fs| {
            p.legacy_s3().and(Some((p.s3_export_path.clone()?, fs.lustre.export_path.clone().unwrap_or_default())))
        }),
        set: |p, v| {
            s3_bucket(S3_EXPORT_PATH, v).map_err(|e| e.message)?;
            p.s3_export_path = Some(v.to_string());
            Ok(())
        },
    },
    Key {
        name: AUTO_IMPORT_POLICY,
        values: "`NONE`, `NEW`, `NEW_CHANGED`, `NEW_CHANGED_DELETED`",
        default: "",
        notes: "needs `s3ImportPath`; on PERSISTENT_2 becomes the association's import events",
        takes: Takes::All,
        mutable: true,
        compare: None,
        set: |p, v| {
            p.auto_import_policy = Some(parse_enum::<AutoImportPolicy>(v, AutoImportPolicy::ALL)?);
            Ok(())
        },
    },
    Key {
        name: AUTO_EXPORT_POLICY,
        values: "`NONE`, `NEW`, `NEW_CHANGED`, `NEW_CHANGED_DELETED`",
        default: "",
        notes: "the association's export events",
        takes: Takes::Persistent2,
        mutable: false,
        compare: None,
        set: |p, v| {
            p.auto_export_policy = Some(parse_enum::<AutoImportPolicy>(v, AutoImportPolicy::ALL)?);
            Ok(())
        },
    },
    Key {
        name: IMPORTED_FILE_CHUNK_SIZE,
        values: "1-512000 (MiB)",
        default: "1024",
        notes: "needs `s3ImportPath`",
        takes: Takes::All,
        mutable: false,
        compare: None,
        set: |p, v| {
            p.imported_file_chunk_size = Some(parse_int(v, 1, 512_000)?);
            Ok(())
        },
    },
    Key {
        name: FILE_SYSTEM_PATH,
        values: "`/` or `/path`",
        default: "`/`",
        notes: "where the S3 data appears",
        takes: Takes::Persistent2,
        mutable: false,
        compare: None,
        set: |p, v| {
            check_fs_path(v)?;
            p.file_system_path = Some(v.to_string());
            Ok(())
        },
    },
    Key {
        name: BATCH_IMPORT_META_DATA_ON_CREATE,
        values: "`true`, `false`",
        default: "`false`",
        notes: "import the bucket's metadata at creation",
        takes: Takes::Persistent2,
        mutable: false,
        compare: None,
        set: |p, v| {
            p.batch_import_metadata_on_create = Some(parse_bool(v)?);
            Ok(())
        },
    },
    Key {
        name: DATA_COMPRESSION_TYPE,
        values: "`NONE`, `LZ4`",
        default: "`NONE`",
        notes: "",
        takes: Takes::All,
        mutable: true,
        compare: Some(|p, fs| {
            let none = DataCompressionType::None;
            both(
                Some(p.lustre.data_compression_type.unwrap_or(none)),
                Some(fs.lustre.data_compression_type.unwrap_or(none)),
            )
        }),
        set: |p, v| {
            p.lustre.data_compression_type = Some(parse_enum::<DataCompressionType>(v, DataCompressionType::ALL)?);
            Ok(())
        },
    },
    Key {
        name: WEEKLY_MAINTENANCE_START_TIME,
        values: "`d:HH:MM` (1 = Monday, UTC)",
        default: "FSx chooses",
        notes: "",
        takes: Takes::All,
        mutable: true,
        compare: None,
        set: |p, v| {
            if !is_weekly_time(v) {
                return Err(format!("{} is not d:HH:MM (d = 1 for Monday to 7 for Sunday, UTC)", Shown(v)));
            }
            p.lustre.weekly_maintenance_start_time = Some(v.to_string());
            Ok(())
        },
    },
    Key {
        name: DAILY_AUTOMATIC_BACKUP_START_TIME,
        values: "`HH:MM` (UTC)",
        default: "",
        notes: "",
        takes: Takes::Persistent,
        mutable: true,
        compare: None,
        set: |p, v| {
            if !is_daily_time(v) {
                return Err(format!("{} is not HH:MM (UTC)", Shown(v)));
            }
            p.lustre.daily_automatic_backup_start_time = Some(v.to_string());
            Ok(())
        },
    },
    Key {
        name: AUTOMATIC_BACKUP_RETENTION_DAYS,
        values: "0-90",
        default: "",
        notes: "above 0 only on PERSISTENT types",
        takes: Takes::All,
        mutable: true,
        compare: None,
        set: |p, v| {
            p.lustre.automatic_backup_retention_days = Some(parse_int(v, 0, 90)?);
            Ok(())
        },
    },
    Key {
        name: COPY_TAGS_TO_BACKUPS,
        values: "`true`, `false`",
        default: "",
        notes: "",
        takes: Takes::Persistent,
        mutable: false,
        compare: None,
        set: |p, v| {
            p.lustre.copy_tags_to_backups = Some(parse_bool(v)?);
            Ok(())
        },
    },
    Key {
        name: FILE_SYSTEM_TYPE_VERSION,
        values: "`2.10`, `2.12`, `2.15`",
        default: "FSx default",
        notes: "PERSISTENT_2 needs 2.12 or later, and 2.15 with a metadata configuration, EFA or Intelligent-Tiering; in place: an upgrade to 2.12 or 2.15, never a downgrade",
        takes: Takes::All,
        mutable: true,
        compare: Some(|p, fs| {
            both(p.lustre.file_system_type_version.as_ref(), fs.lustre.file_system_type_version.as_ref())
        }),
        set: |p, v| {
            // FSx's versions are 2.10, 2.12, 2.15: one digit, a dot, one or two digits.
            let ok = matches!(v.split_once('.'), Some((major, minor))
                if major.len() == 1 && (1..=2).contains(&minor.len())
                    && major.bytes().chain(minor.bytes()).all(|b| b.is_ascii_digit()));
            if !ok {
                return Err(format!("{} is not a Lustre version such as 2.12 or 2.15", Shown(v)));
            }
            p.lustre.file_system_type_version = Some(v.to_string());
            Ok(())
        },
    },
    Key {
        name: EXTRA_TAGS,
        values: "`k=v,k=v`",
        default: "",
        notes: "added to the file system; cannot set `CSIVolumeName` or `aws:` keys",
        takes: Takes::All,
        mutable: false,
        compare: None,
        set: |p, v| {
            p.extra_tags = parse_tags(EXTRA_TAGS, v).map_err(|e| e.message)?;
            Ok(())
        },
    },
    Key {
        name: EFA_ENABLED,
        values: "`true`, `false`",
        default: "",
        notes: "",
        takes: Takes::Persistent2,
        mutable: false,
        compare: Some(|p, fs| {
            Some((p.lustre.efa_enabled?.to_string(), fs.lustre.efa_enabled.unwrap_or(false).to_string()))
        }),
        set: |p, v| {
            p.lustre.efa_enabled = Some(parse_bool(v)?);
            Ok(())
        },
    },
    Key {
        name: METADATA_CONFIGURATION_MODE,
        values: "`AUTOMATIC`, `USER_PROVISIONED`",
        default: "",
        notes: "",
        takes: Takes::Persistent2,
        mutable: true,
        compare: None,
        set: |p, v| {
            p.lustre.metadata_mode = Some(parse_enum::<MetadataMode>(v, MetadataMode::ALL)?);
            Ok(())
        },
    },
    Key {
        name: METADATA_IOPS,
        values: "1500, 3000, 6000, or multiples of 12000 up to 192000",
        default: "",
        notes: "needs `USER_PROVISIONED`",
        takes: Takes::Persistent2,
        mutable: true,
        compare: None,
        set: |p, v| {
            let n = parse_int(v, 1500, 192_000)?;
            if !valid_metadata_iops(n) {
                return Err(format!("{n} is not 1500, 3000, 6000 or a multiple of 12000 up to 192000"));
            }
            p.lustre.metadata_iops = Some(n);
            Ok(())
        },
    },
    Key {
        name: ROOT_SQUASH,
        values: "`UID:GID`, such as `65534:65534`",
        default: "none",
        notes: "root on clients acts as this user and group on the file system; `0:0` turns it off",
        takes: Takes::All,
        mutable: true,
        compare: Some(|p, fs| Some((p.lustre.root_squash.clone()?, fs.lustre.root_squash.clone().unwrap_or_default()))),
        set: |p, v| {
            let id = |s: &str| {
                (1..=10).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u32>().is_ok()
            };
            if !matches!(v.split_once(':'), Some((uid, gid)) if id(uid) && id(gid)) {
                return Err(format!("{} is not UID:GID, such as 65534:65534", Shown(v)));
            }
            p.lustre.root_squash = Some(v.to_string());
            Ok(())
        },
    },
    Key {
        name: NO_SQUASH_NIDS,
        values: "comma-separated client NIDs or ranges, such as `10.0.1.6@tcp,10.0.[2-10].[1-255]@tcp` (at most 64)",
        default: "none",
        notes: "clients root squash does not apply to; needs `rootSquash`",
        takes: Takes::All,
        mutable: true,
        compare: None,
        set: |p, v| {
            let mut nids: Vec<String> = Vec::new();
            for nid in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if !is_nid(nid) {
                    return Err(format!(
                        "{} is not a Lustre NID: an IPv4 address whose parts are numbers or [a-b] ranges, then @tcp (such as 10.0.1.6@tcp or 10.0.[2-10].[1-255]@tcp), 11-43 characters",
                        Shown(nid)
                    ));
                }
                if !nids.iter().any(|n| n == nid) {
                    nids.push(nid.to_string());
                }
            }
            if nids.len() > 64 {
                return Err(format!("{} NIDs given; FSx allows at most 64", nids.len()));
            }
            p.lustre.no_squash_nids = (!nids.is_empty()).then_some(nids);
            Ok(())
        },
    },
    Key {
        name: THROUGHPUT_CAPACITY,
        values: "MBps: a multiple of 4000, up to 2000000",
        default: "",
        notes: "required with Intelligent-Tiering, refused otherwise; in place only upwards",
        takes: Takes::Persistent2,
        mutable: true,
        compare: Some(|p, fs| both(p.lustre.throughput_capacity, fs.lustre.throughput_capacity)),
        set: |p, v| {
            let t = parse_int(v, 4000, 2_000_000)?;
            if !valid_throughput_capacity(t) {
                return Err(format!("{t} is not a multiple of 4000 from 4000 to 2000000 (MBps)"));
            }
            p.lustre.throughput_capacity = Some(t);
            Ok(())
        },
    },
    Key {
        name: DATA_READ_CACHE_SIZING_MODE,
        values: "`NO_CACHE`, `USER_PROVISIONED`, `PROPORTIONAL_TO_THROUGHPUT_CAPACITY`",
        default: "",
        notes: "the SSD read cache; required with Intelligent-Tiering, refused otherwise",
        takes: Takes::Persistent2,
        mutable: true,
        compare: Some(|p, fs| both(p.lustre.data_read_cache_sizing_mode, fs.lustre.data_read_cache_sizing_mode)),
        set: |p, v| {
            p.lustre.data_read_cache_sizing_mode = Some(parse_enum(v, ReadCacheSizingMode::ALL)?);
            Ok(())
        },
    },
    Key {
        name: DATA_READ_CACHE_SIZE_GIB,
        values: "GiB: 32 to 131072 per 4000 MBps of `throughputCapacity`",
        default: "",
        notes: "needs `USER_PROVISIONED`",
        takes: Takes::Persistent2,
        mutable: true,
        compare: None,
        set: |p, v| {
            p.lustre.data_read_cache_size_gib = Some(parse_int(v, 1, i32::MAX)?);
            Ok(())
        },
    },
    Key {
        name: LUSTRE_LOG_LEVEL,
        values: "`DISABLED`, `WARN_ONLY`, `ERROR_ONLY`, `WARN_ERROR`",
        default: "FSx default (`DISABLED`)",
        notes: "logs data repository events to CloudWatch Logs",
        takes: Takes::All,
        mutable: true,
        compare: None,
        set: |p, v| {
            p.lustre.log_level = Some(parse_enum(v, LogLevel::ALL)?);
            Ok(())
        },
    },
    Key {
        name: LUSTRE_LOG_DESTINATION,
        values: "`arn:aws:logs:<region>:<account>:log-group:/aws/fsx/<name>`",
        default: "`/aws/fsx/lustre`",
        notes: "a log group whose name starts with `/aws/fsx`, in the file system's partition, region and account; needs a `lustreLogLevel` other than `DISABLED`",
        takes: Takes::All,
        mutable: true,
        compare: None,
        set: |p, v| {
            check_log_destination(v)?;
            // One spelling of a log group ARN (CloudWatch shows it with ":*"; FSx takes both),
            // so a destination compares equal to what FSx reports.
            p.lustre.log_destination = Some(v.strip_suffix(":*").unwrap_or(v).to_string());
            Ok(())
        },
    },
    Key {
        name: DATA_REPOSITORY_ASSOCIATIONS,
        values: "a JSON list of 1-8 `{\"fileSystemPath\", \"dataRepositoryPath\", \"importedFileChunkSize\"?, \"batchImportMetaDataOnCreate\"?, \"autoImportEvents\"?, \"autoExportEvents\"?}`",
        default: "",
        notes: "one S3 link per entry (see below); Lustre 2.12 or later; not with `s3ImportPath`",
        takes: Takes::NotScratch1,
        mutable: false,
        compare: None,
        set: |p, v| {
            p.associations = associations::parse(v)?;
            Ok(())
        },
    },
    Key {
        name: AUTO_IMPORT_EVENTS,
        values: "comma-separated `NEW`, `CHANGED`, `DELETED`, or `NONE`",
        default: "",
        notes: "the `s3ImportPath` association's import events; not with `autoImportPolicy`",
        takes: Takes::Persistent2,
        mutable: false,
        compare: None,
        set: |p, v| {
            p.auto_import_events = Some(parse_events(v)?);
            Ok(())
        },
    },
    Key {
        name: AUTO_EXPORT_EVENTS,
        values: "comma-separated `NEW`, `CHANGED`, `DELETED`, or `NONE`",
        default: "",
        notes: "the `s3ImportPath` association's export events; not with `autoExportPolicy`",
        takes: Takes::Persistent2,
        mutable: false,
        compare: None,
        set: |p, v| {
            p.auto_export_events = Some(parse_events(v)?);
            Ok(())
        },
    },
    Key {
        name: FINAL_BACKUP_ON_DELETE,
        values: "`true`, `false`",
        default: "`false`",
        notes: "a last backup when DeleteVolume deletes the file system; it outlives it",
        takes: Takes::Persistent,
        mutable: false,
        compare: None,
        set: |p, v| {
            p.final_backup_on_delete = parse_bool(v)?;
            Ok(())
        },
    },
    Key {
        name: FINAL_BACKUP_TAGS,
        values: "`k=v,k=v`",
        default: "FSx's (the file system's tags with `copyTagsToBackups`)",
        notes: "the final backup's tags; needs `finalBackupOnDelete`",
        takes: Takes::Persistent,
        mutable: false,
        compare: None,
        set: |p, v| {
            let tags = parse_tags(FINAL_BACKUP_TAGS, v).map_err(|e| e.message)?;
            // Kept on the file system as tags until DeleteVolume: the key must fit behind the prefix.
            if let Some((k, _)) = tags.iter().find(|(k, _)| k.chars().count() + FINAL_BACKUP_TAG_PREFIX.len() > 128) {
                return Err(format!(
                    "tag key {} is too long: final backup tag keys may have at most {} characters",
                    Shown(k),
                    128 - FINAL_BACKUP_TAG_PREFIX.len()
                ));
            }
            p.final_backup_tags = tags;
            Ok(())
        },
    },
];

/// `ThroughputCapacity`: a multiple of 4000 MBps up to 2000000. FSx's model bounds the field
/// to 4000-2000000 (`ThroughputCapacityMbps`), and the user guide allows 4000 and its
/// multiples; the API reference's prose still names 1000 and 2000, which that bound refuses.
pub(super) fn valid_throughput_capacity(t: i32) -> bool {
    (4000..=2_000_000).contains(&t) && t % 4000 == 0
}

/// A Lustre NID as FSx takes it: `^([0-9\[\]\-]*\.){3}([0-9\[\]\-]*)@tcp$`, 11-43 characters;
/// each part a number or a `[a-b]` range of numbers up to 255.
fn is_nid(nid: &str) -> bool {
    let Some(ip) = nid.strip_suffix("@tcp") else { return false };
    let byte = |s: &str| {
        !s.is_empty()
            && s.len() <= 3
            && s.bytes().all(|b| b.is_ascii_digit())
            && s.parse::<u16>().is_ok_and(|n| n <= 255)
    };
    let part = |s: &str| match s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        Some(range) => {
            matches!(range.split_once('-'), Some((a, b)) if byte(a) && byte(b) && a.parse::<u16>().ok() <= b.parse::<u16>().ok())
        }
        None => byte(s),
    };
    (11..=43).contains(&nid.len()) && ip.split('.').count() == 4 && ip.split('.').all(part)
}

/// A CloudWatch Logs log group ARN FSx can log to: FSx's `GeneralARN` pattern, service
/// `logs`, a 12-digit account, and a log group named `/aws/fsx...` (the API reference's rule).
/// The partition, region and account must be the file system's: FSx checks those.
fn check_log_destination(v: &str) -> Result<(), String> {
    let accepted = "expected arn:<partition>:logs:<region>:<account>:log-group:/aws/fsx/<name> (a CloudWatch Logs log group whose name starts with /aws/fsx, in the file system's region and account), at most 1024 characters";
    let parts: Vec<&str> = v.splitn(6, ':').collect();
    let ok = v.len() <= 1024
        && !v.chars().any(char::is_control)
        && parts.len() == 6
        && parts[0] == "arn"
        && (1..=63).contains(&parts[1].len())
        && parts[2] == "logs"
        && (1..=63).contains(&parts[3].len())
        && parts[3].bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].strip_prefix("log-group:").is_some_and(|group| {
            let name = group.strip_suffix(":*").unwrap_or(group);
            name.starts_with("/aws/fsx")
                && name.len() <= 512
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-/.#".contains(&b))
        });
    if !ok {
        return Err(format!("{} is not a log group ARN FSx can log to ({accepted})", Shown(v)));
    }
    Ok(())
}

/// The key named `name`, if there is one.
pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// The README's reference table, from [`KEYS`].
#[cfg(test)]
pub fn reference_table() -> String {
    let mut out = String::from("| key | values | default | notes |\n|---|---|---|---|\n");
    for key in KEYS {
        out.push_str(&key.reference_row());
        out.push('\n');
    }
    out
}

/// The chart's schema for a StorageClass's `parameters` (values.schema.json,
/// `storageClasses[].parameters`), from [`KEYS`]: every key, with its values as an enum where
/// the table lists them all, `subnetId` required, the external-provisioner's keys allowed,
/// and nothing else.
#[cfg(test)]
pub fn chart_parameters_schema() -> serde_json::Value {
    use serde_json::{Value, json};
    let plain = |s: &str| s.replace('`', "").replace("**", "");
    let mut properties = serde_json::Map::new();
    for key in KEYS {
        let mut description = plain(key.values);
        if !key.default.is_empty() {
            description.push_str(&format!("; default: {}", plain(key.default)));
        }
        if key.takes != Takes::All {
            description.push_str(&format!("; {} only", key.takes.describe()));
        }
        if !key.notes.is_empty() {
            description.push_str(&format!("; {}", plain(key.notes)));
        }
        // A list of two or more `WORDS` (upper case, digits, `.`, `_`, or true/false) is the
        // whole set of values; anything else (`subnet-…`, `k=v,k=v`) only shows a form.
        let items: Vec<&str> = key.values.split(", ").collect();
        let word = |i: &&str| {
            i.strip_prefix('`').and_then(|i| i.strip_suffix('`')).is_some_and(|w| {
                matches!(w, "true" | "false")
                    || (!w.is_empty()
                        && w.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'.'))
            })
        };
        let listed = items.len() > 1 && items.iter().all(word);
        let mut schema = json!({"description": description});
        if listed {
            let mut values: Vec<Value> = items.iter().map(|i| json!(i.trim_matches('`'))).collect();
            if values == [json!("true"), json!("false")] {
                values.extend([json!(true), json!(false)]);
            }
            schema["enum"] = Value::Array(values);
        } else {
            schema["type"] = json!(["string", "integer"]);
        }
        properties.insert(key.name.to_string(), schema);
    }
    use crate::subdir::params as subdir;
    properties.insert(
        subdir::PROVISIONING_MODE.to_string(),
        json!({"description": "fileSystem (the default): one file system per volume", "enum": ["fileSystem"]}),
    );
    let file_systems = json!({
        "type": "object",
        "anyOf": [{"required": [SUBNET_ID]}, {"required": [SUBNET_IDS]}],
        "properties": properties,
        "patternProperties": {"^csi\\.storage\\.k8s\\.io/": {"type": "string"}},
        "additionalProperties": false,
    });
    // A subdirectory class: its own keys only (crate::subdir::params::KEYS).
    let mut properties = serde_json::Map::new();
    for (name, values, default) in subdir::KEYS {
        let schema = if *name == subdir::PROVISIONING_MODE {
            json!({"description": "subdirectory: a directory per volume on an existing file system", "enum": ["subdirectory"]})
        } else if *values == "`true` or `false`" {
            json!({"description": format!("true or false; default: {}", plain(default)), "enum": ["true", "false", true, false]})
        } else {
            json!({"description": format!("{}; default: {}", plain(values), plain(default)), "type": ["string", "integer"]})
        };
        properties.insert(name.to_string(), schema);
    }
    let directories = json!({
        "type": "object",
        "required": [subdir::PROVISIONING_MODE, subdir::FILE_SYSTEM_ID],
        "properties": properties,
        "patternProperties": {"^csi\\.storage\\.k8s\\.io/": {"type": "string"}},
        "additionalProperties": false,
    });
    json!({"oneOf": [file_systems, directories]})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chart's values.schema.json checks a StorageClass's parameters against this table;
    /// regenerate its `storageClasses.items.properties.parameters` from here.
    #[test]
    fn the_chart_schema_lists_every_key() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/helm/aws-fsx-csi-driver/values.schema.json");
        let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let have = &schema["properties"]["storageClasses"]["items"]["properties"]["parameters"];
        let want = chart_parameters_schema();
        assert!(
            *have == want,
            "values.schema.json's storageClasses parameters differ from provision/params/keys.rs; replace them with:\n{}",
            serde_json::to_string(&want).unwrap()
        );
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KEYS.len());
    }

    /// The README's StorageClass reference is this table; regenerate it from here.
    #[test]
    fn the_readme_reference_table_is_the_key_table() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let table = reference_table();
        assert!(
            readme.contains(&table),
            "README.md's StorageClass table differs from provision/params/keys.rs; replace it with:\n\n{table}"
        );
    }
}
