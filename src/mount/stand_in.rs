//! Test only (cargo feature `lustre-stand-in`; the shipped binary and image never have it):
//! Lustre stood in by a directory, for a node without Lustre (the node tier).
//!
//! A Lustre `mount(2)` (`fstype` `lustre`, source `<nid>:/<mountname>`) becomes a bind mount
//! of `<kubelet-dir>/plugins/fsx.csi.aws.com/fsx-lustre-stand-in/<mountname>` (created on
//! first use), so two pods, or a pod and a later pod, share data through one "file system",
//! and the mount flags (`ro`, `nosuid`, `nodev`, ...) are applied by a bind remount. Every
//! other call is the real syscall. The mount table is shown as it would be with Lustre: an
//! entry whose root lies in the stand-in directory reads as `lustre` from
//! `127.0.0.1@tcp:/<mountname>`, with the root inside that file system, so everything around
//! the mount (staging, the bind per pod, idempotency and health checks, unmount) runs the
//! shipped code. Host names resolve to 127.0.0.1 (there is no DNS for FSx here). The Lustre
//! mount options in `data` are dropped: a bind takes none.

use std::net::Ipv4Addr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use super::{Mounter, SyscallMounter, Usage, lustre};

/// The directory, below the driver's plugin directory, that holds the stood-in file systems.
pub const STORE: &str = "fsx-lustre-stand-in";

/// The flags a bind remount can change on the mount point.
const PER_MOUNT: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NOATIME)
    .union(MsFlags::MS_NODIRATIME)
    .union(MsFlags::MS_RELATIME);

/// The stand-in mounter (see the module's doc).
#[derive(Debug, Clone)]
pub struct StandInMounter {
    store: PathBuf,
}

impl StandInMounter {
    /// Keeps the stood-in file systems below `kubelet_dir`'s plugin directory of this driver.
    pub fn new(kubelet_dir: &Path) -> Self {
        Self { store: kubelet_dir.join("plugins").join(crate::DRIVER_NAME).join(STORE) }
    }

    fn lustre(&self, source: Option<&str>, target: &Path, flags: MsFlags) -> Result<(), Errno> {
        let source = source.ok_or(Errno::EINVAL)?;
        let (_, path) = source.split_once(":/").ok_or(Errno::EINVAL)?;
        // Staging mounts the file system's root; a subdirectory is the bind's business.
        if !lustre::is_mount_name(path) {
            return Err(Errno::ENOENT);
        }
        let dir = self.store.join(path);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32)))?;
        SyscallMounter.mount(Some(dir.to_str().ok_or(Errno::EINVAL)?), target, None, MsFlags::MS_BIND, None)?;
        let extra = flags & PER_MOUNT;
        if !extra.is_empty() {
            // `target` is the directory's /proc/self/fd path, which still names the directory
            // under the new mount: the remount goes to the mount point by its path.
            let at = if target.starts_with("/proc/self/fd") { std::fs::read_link(target).ok() } else { None };
            let at = at.as_deref().unwrap_or(target);
            let remount = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | extra;
            if let Err(e) = SyscallMounter.mount(None, at, None, remount, None) {
                let _ = SyscallMounter.unmount(at, MntFlags::MNT_DETACH);
                return Err(e);
            }
        }
        Ok(())
    }
}

impl Mounter for StandInMounter {
    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno> {
        if fstype == Some("lustre") {
            return self.lustre(source, target, flags);
        }
        SyscallMounter.mount(source, target, fstype, flags, data)
    }

    fn unmount(&self, target: &Path, flags: MntFlags) -> Result<(), Errno> {
        SyscallMounter.unmount(target, flags)
    }

    fn mount_table(&self) -> std::io::Result<String> {
        SyscallMounter.mount_table().map(|t| as_lustre(&t))
    }

    fn statvfs(&self, path: &Path) -> Result<Usage, Errno> {
        SyscallMounter.statvfs(path)
    }

    fn republish(
        &self,
        top: &Path,
        parent: std::os::fd::BorrowedFd<'_>,
        name: &std::ffi::OsStr,
    ) -> Result<bool, Errno> {
        SyscallMounter.republish(top, parent, name)
    }

    fn resolve(&self, _host: &str) -> std::io::Result<Ipv4Addr> {
        Ok(Ipv4Addr::LOCALHOST)
    }
}

/// `/proc/self/mountinfo` text with the stand-in's mounts shown as Lustre mounts.
pub fn as_lustre(table: &str) -> String {
    let mut out = String::with_capacity(table.len());
    for line in table.lines() {
        out.push_str(&rewrite(line).unwrap_or_else(|| line.to_string()));
        out.push('\n');
    }
    out
}

/// One line rewritten, or `None` if it is not a stand-in mount. Works on the escaped text, so
/// the rest of the root keeps the kernel's escapes.
fn rewrite(line: &str) -> Option<String> {
    let (pre, post) = line.split_once(" - ")?;
    let fields: Vec<&str> = pre.split(' ').collect();
    let root = *fields.get(3)?;
    let marker = format!("/{STORE}/");
    let at = root.find(&marker)?;
    let inside = &root[at + marker.len()..];
    let (name, rest) = inside.split_once('/').map_or((inside, ""), |(n, r)| (n, r));
    if !lustre::is_mount_name(name) {
        return None;
    }
    let mut p = post.split(' ');
    let _fstype = p.next()?;
    let _source = p.next()?;
    let super_options: Vec<&str> = p.collect();
    let mut fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    fields[3] = format!("/{rest}");
    Some(format!("{} - lustre 127.0.0.1@tcp:/{name} {}", fields.join(" "), super_options.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mount::mountinfo;

    #[test]
    fn stand_in_mounts_read_as_lustre_and_others_are_untouched() {
        let table = "\
25 1 0:22 / /var rw,relatime shared:1 - tmpfs tmpfs rw\n\
30 25 0:22 /lib/kubelet/plugins/fsx.csi.aws.com/fsx-lustre-stand-in/abcdef12 /var/lib/kubelet/plugins/kubernetes.io/csi/fsx.csi.aws.com/0f/globalmount rw,nosuid shared:1 - tmpfs tmpfs rw\n\
31 25 0:22 /lib/kubelet/plugins/fsx.csi.aws.com/fsx-lustre-stand-in/abcdef12/team\\040a /var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv/mount ro,nosuid,nodev shared:1 - tmpfs tmpfs rw\n\
32 25 0:22 /lib/kubelet/plugins/fsx.csi.aws.com/fsx-lustre-stand-in/../x /var/x rw - tmpfs tmpfs rw\n";
        let entries = mountinfo::parse(&as_lustre(table));
        assert_eq!(entries.len(), 4);
        assert_eq!((entries[0].fstype.as_str(), entries[0].root.to_str()), ("tmpfs", Some("/")));
        assert_eq!(entries[1].fstype, "lustre");
        assert_eq!(entries[1].source, "127.0.0.1@tcp:/abcdef12");
        assert_eq!(entries[1].root.to_str(), Some("/"));
        assert_eq!(entries[1].options, ["rw", "nosuid"]);
        assert_eq!(lustre::fsname_of(&entries[1].source), Some("abcdef12"));
        assert_eq!(entries[2].root.to_str(), Some("/team a"));
        assert_eq!(entries[2].super_options, ["rw"]);
        // Not a mount name: left as it is.
        assert_eq!(entries[3].fstype, "tmpfs");
    }

    #[test]
    fn only_a_mount_name_is_stood_in() {
        let m = StandInMounter::new(Path::new("/nonexistent-kubelet"));
        for source in ["127.0.0.1@tcp:/../../etc", "127.0.0.1@tcp:/", "no-colon", "127.0.0.1@tcp:/abc/def"] {
            assert_eq!(
                m.mount(Some(source), Path::new("/nonexistent-target"), Some("lustre"), MsFlags::empty(), None),
                Err(if source.contains(":/") { Errno::ENOENT } else { Errno::EINVAL }),
                "{source}"
            );
        }
        assert_eq!(m.resolve("fs-1.fsx.us-east-1.amazonaws.com").unwrap(), Ipv4Addr::LOCALHOST);
    }
}
