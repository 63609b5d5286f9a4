//! Whether this node can mount Lustre at all: the Lustre client kernel module.
//!
//! Without it every NodeStageVolume fails with `ENODEV`, one pod at a time. The check has no
//! side effects on a healthy node: it reads `/proc/filesystems` (the module is loaded) and,
//! failing that, the kernel's module index (`/lib/modules/<release>/modules.alias`, mounted
//! read-only into the node plugin): the kernel loads the module on the first Lustre mount
//! (`request_module("fs-lustre")`), so an installed module that is not loaded yet is healthy.
//! Nothing is mounted or loaded to find out.

use std::io::Read;
use std::path::{Path, PathBuf};

/// What the node has of the Lustre client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientModule {
    /// The kernel has the `lustre` file system type.
    Loaded,
    /// Not loaded, but installed for the running kernel: the first mount loads it.
    Installed,
    /// The module index of the running kernel has no Lustre module.
    Missing { release: String },
    /// Neither can be told (the module index is not visible to the plugin).
    Unknown { why: String },
}

impl ClientModule {
    /// The metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            ClientModule::Loaded => "loaded",
            ClientModule::Installed => "installed",
            ClientModule::Missing { .. } => "missing",
            ClientModule::Unknown { .. } => "unknown",
        }
    }

    /// Every metric label, for the gauge's fixed set.
    pub const STATES: &'static [&'static str] = &["loaded", "installed", "missing", "unknown"];
}

/// The longest index file read (a distribution kernel's `modules.alias` is about 1 MiB).
const MAX_INDEX: u64 = 32 << 20;

/// True if `/proc/filesystems`' text lists the `lustre` type.
fn lists_lustre(filesystems: &str) -> bool {
    filesystems.lines().any(|l| l.split_whitespace().last() == Some("lustre"))
}

/// True if a `modules.alias` text maps `fs-lustre` to a module (what `request_module` looks up).
fn aliases_lustre(aliases: &str) -> bool {
    aliases.lines().any(|l| {
        let mut words = l.split_whitespace();
        words.next() == Some("alias") && words.next() == Some("fs-lustre") && words.next().is_some()
    })
}

fn read_bounded(path: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    std::fs::File::open(path)?.take(MAX_INDEX).read_to_string(&mut text)?;
    Ok(text)
}

/// Detects the Lustre client from `proc_filesystems` and the module tree `modules` (normally
/// `/proc/filesystems` and `/lib/modules`) for kernel `release`.
pub fn detect(proc_filesystems: &Path, modules: &Path, release: &str) -> ClientModule {
    if read_bounded(proc_filesystems).is_ok_and(|text| lists_lustre(&text)) {
        return ClientModule::Loaded;
    }
    if release.is_empty() || release.contains('/') || release == "." || release == ".." {
        return ClientModule::Unknown { why: format!("the kernel release {release:?} is not a directory name") };
    }
    let index: PathBuf = modules.join(release).join("modules.alias");
    match read_bounded(&index) {
        Ok(text) if aliases_lustre(&text) => ClientModule::Installed,
        Ok(_) => ClientModule::Missing { release: release.to_string() },
        Err(e) => ClientModule::Unknown { why: format!("cannot read {}: {e}", index.display()) },
    }
}

/// [`detect`] on this node: `/proc/filesystems`, `/lib/modules` and the running kernel.
pub fn detect_here() -> ClientModule {
    let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    detect(Path::new("/proc/filesystems"), Path::new("/lib/modules"), &release)
}

/// Logs what the node has, with what to do about it, and records it in the metrics.
pub fn report(found: &ClientModule) {
    crate::metrics::get().lustre_client(found.as_str());
    match found {
        ClientModule::Loaded => tracing::info!("the Lustre client kernel module is loaded"),
        ClientModule::Installed => {
            tracing::info!("the Lustre client kernel module is installed; the kernel loads it on the first mount")
        }
        ClientModule::Missing { release } => tracing::error!(
            kernel = %release,
            "the Lustre client kernel module is not installed for this kernel: every FSx for Lustre mount on this node will fail with ENODEV. Use a node image with the Lustre client (EKS-optimized Amazon Linux 2023: `dnf install -y lustre-client`; Amazon Linux 2: `amazon-linux-extras install -y lustre`; Bottlerocket includes it), or keep FSx pods off this node"
        ),
        ClientModule::Unknown { why } => tracing::warn!(
            reason = %crate::text::Field(why),
            "cannot tell whether this node has the Lustre client kernel module (mount /lib/modules read-only into the node plugin, as the manifests do); mounts will say ENODEV if it is missing"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_from_what_the_kernel_shows() {
        let dir = tempfile::tempdir().unwrap();
        let fs = dir.path().join("filesystems");
        let modules = dir.path().join("modules");
        std::fs::create_dir_all(modules.join("6.1.0-1")).unwrap();
        std::fs::write(&fs, "nodev\tsysfs\nnodev\ttmpfs\n\text4\n").unwrap();
        let alias = modules.join("6.1.0-1/modules.alias");

        // No module index for this kernel: cannot tell.
        assert!(matches!(detect(&fs, &modules, "6.2.0"), ClientModule::Unknown { .. }));
        // An index without Lustre: missing.
        std::fs::write(&alias, "alias fs-ext4 ext4\nalias fs-lustrefs other\n# alias fs-lustre lustre\n").unwrap();
        assert_eq!(detect(&fs, &modules, "6.1.0-1"), ClientModule::Missing { release: "6.1.0-1".into() });
        // Installed, not loaded: healthy (the first mount loads it).
        std::fs::write(&alias, "alias fs-ext4 ext4\nalias fs-lustre lustre\n").unwrap();
        assert_eq!(detect(&fs, &modules, "6.1.0-1"), ClientModule::Installed);
        // Loaded: the index is not even needed.
        std::fs::write(&fs, "nodev\tsysfs\n\tlustre\n").unwrap();
        assert_eq!(detect(&fs, Path::new("/nonexistent"), "x"), ClientModule::Loaded);
        // A release that is not a directory name is not followed out of the module tree.
        std::fs::write(&fs, "nodev\ttmpfs\n").unwrap();
        for bad in ["", "..", "../../etc", "a/b"] {
            assert!(matches!(detect(&fs, &modules, bad), ClientModule::Unknown { .. }), "{bad:?}");
        }
        assert_eq!(ClientModule::STATES.len(), 4);
    }

    /// This machine has no Lustre: the check says missing or unknown, never loaded.
    #[test]
    fn this_machine_has_no_lustre() {
        assert!(!matches!(detect_here(), ClientModule::Loaded | ClientModule::Installed), "{:?}", detect_here());
    }
}
