//! The mount boundary: everything the node plugin asks of the kernel.
//!
//! - [`client`] and [`lnet`]: what the node has of Lustre (the client kernel module) and of
//!   EFA (LNet's `@efa` interfaces), read without side effects;
//! - [`lustre`]: source, flag and data building, pure and unit-tested;
//! - [`mountinfo`]: `/proc/self/mountinfo` parsing, the source of truth for idempotency;
//! - [`paths`]: request paths checked, then resolved below the kubelet directory without
//!   following symlinks, so no call touches anything outside it;
//! - `worker`: runs calls that may hang on their own threads, bounded by a deadline;
//! - `ops`: the operations the node service performs (stage, bind, unmount with
//!   escalation, cleanup, health), built on the pieces above, with one typed error;
//! - [`Mounter`]: the trait over the syscalls, and [`SyscallMounter`], its real
//!   implementation on `mount(2)`, `umount2(2)` and `statvfs(3)`. No program is ever executed.
//! - `stand_in` (test builds only, feature `lustre-stand-in`): Lustre stood in by a bind of a
//!   directory, for the node tier on a machine without Lustre.

pub mod client;
pub mod lnet;
pub mod lustre;
pub mod mountinfo;
pub(crate) mod ops;
pub mod paths;
#[cfg(feature = "lustre-stand-in")]
pub mod stand_in;
pub(crate) mod worker;

use std::net::Ipv4Addr;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

/// Usage figures from `statvfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub total_bytes: i64,
    pub available_bytes: i64,
    pub used_bytes: i64,
    pub total_inodes: i64,
    pub free_inodes: i64,
    pub used_inodes: i64,
}

/// The kernel calls the node plugin makes. Implementations are called from worker threads
/// and may block.
///
/// The node service never passes a path from a request here: targets and sources are
/// `/proc/self/fd/N[/name]` handles of directories resolved below the kubelet directory
/// without following symlinks ([`paths`]), so the kernel acts on exactly what was checked.
pub trait Mounter: Send + Sync + 'static {
    /// `mount(2)`. Not idempotent by itself: callers check [`Mounter::mount_table`] first.
    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno>;

    /// `umount2(2)`. `EINVAL` means `target` is not a mount point.
    fn unmount(&self, target: &Path, flags: MntFlags) -> Result<(), Errno>;

    /// The text of `/proc/self/mountinfo`. Never touches a mounted file system.
    fn mount_table(&self) -> std::io::Result<String>;

    /// `statvfs(3)` on `path`. May hang on a dead Lustre mount.
    fn statvfs(&self, path: &Path) -> Result<Usage, Errno>;

    /// Mounts, in place of the mount at `name` in the directory `parent` (whose root `top` is
    /// open), a copy of it as it is now. A remount changes per-mount flags (read-only) only in
    /// this mount namespace; mount events propagate to the peers of a shared mount (the host's
    /// view of the kubelet directory, which the container runtime binds into the pod) with
    /// the flags the mount has when it is made. So a read-only bind is made read-only, then
    /// cloned (`open_tree`), unmounted, and the clone moved in (`move_mount`), following no
    /// symlink. `Ok(false)`: the kernel has no `open_tree` (before 5.2); the remount stays
    /// local. The default does nothing (mounters with no propagation to care about).
    fn republish(
        &self,
        _top: &Path,
        _parent: std::os::fd::BorrowedFd<'_>,
        _name: &std::ffi::OsStr,
    ) -> Result<bool, Errno> {
        Ok(true)
    }

    /// Resolves a host name to its first IPv4 address (`getaddrinfo`).
    fn resolve(&self, host: &str) -> std::io::Result<Ipv4Addr> {
        lustre::resolve_ipv4(host)
    }
}

/// The real mounter: direct syscalls through `nix`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SyscallMounter;

impl Mounter for SyscallMounter {
    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn unmount(&self, target: &Path, flags: MntFlags) -> Result<(), Errno> {
        nix::mount::umount2(target, flags)
    }

    fn mount_table(&self) -> std::io::Result<String> {
        std::fs::read_to_string("/proc/self/mountinfo")
    }

    fn republish(
        &self,
        top: &Path,
        parent: std::os::fd::BorrowedFd<'_>,
        name: &std::ffi::OsStr,
    ) -> Result<bool, Errno> {
        use rustix::mount::{MoveMountFlags, OpenTreeFlags, move_mount, open_tree};
        let errno = |e: rustix::io::Errno| Errno::from_raw(e.raw_os_error());
        let clone =
            match open_tree(rustix::fs::CWD, top, OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC) {
                Ok(fd) => fd,
                Err(e) if e == rustix::io::Errno::NOSYS => return Ok(false),
                Err(e) => return Err(errno(e)),
            };
        let at = paths::fd_path(&parent).join(name);
        nix::mount::umount2(&at, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW)?;
        move_mount(&clone, "", parent, name, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH).map_err(errno)?;
        Ok(true)
    }

    fn statvfs(&self, path: &Path) -> Result<Usage, Errno> {
        let s = nix::sys::statvfs::statvfs(path)?;
        let frsize = s.fragment_size() as i64;
        let total = (s.blocks() as i64).saturating_mul(frsize);
        let free = (s.blocks_free() as i64).saturating_mul(frsize);
        let available = (s.blocks_available() as i64).saturating_mul(frsize);
        Ok(Usage {
            total_bytes: total,
            available_bytes: available,
            used_bytes: total.saturating_sub(free),
            total_inodes: s.files() as i64,
            free_inodes: s.files_free() as i64,
            used_inodes: (s.files() as i64).saturating_sub(s.files_free() as i64),
        })
    }
}

/// What a failed Lustre `mount(2)` means, in words a person can act on (errnos from
/// lustre-release `obd_mount.c` and the kernel).
/// `call` is the call as [`lustre::describe_call`] writes it.
pub fn explain_mount_errno(errno: Errno, call: &str) -> String {
    let advice = match errno {
        Errno::ENODEV => "the Lustre client kernel module is not loaded on this node (install the lustre client for this kernel and load it with `modprobe lustre`)".to_string(),
        Errno::ENOENT => "wrong mount name: check the volume's mountname (the file system's MountName)".to_string(),
        Errno::EINVAL => "bad mount option or unresolved host: check mountOptions and the volume's dnsname".to_string(),
        Errno::EIO => "the file system is unreachable: check that it is AVAILABLE and reachable from this node".to_string(),
        Errno::ETIMEDOUT => "the file system did not answer: check that its security group allows TCP 988 from this node".to_string(),
        Errno::EBUSY => "the target is busy or already mounted".to_string(),
        Errno::EPERM | Errno::EACCES => "the node plugin needs CAP_SYS_ADMIN (run it privileged)".to_string(),
        other => other.desc().to_string(),
    };
    format!("{call} failed with {errno}: {advice}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_messages_say_what_to_check() {
        assert!(explain_mount_errno(Errno::ENODEV, "s").contains("Lustre client kernel module is not loaded"));
        assert!(explain_mount_errno(Errno::ENOENT, "s").contains("wrong mount name"));
        assert!(explain_mount_errno(Errno::EINVAL, "s").contains("bad mount option or unresolved host"));
        assert!(explain_mount_errno(Errno::EIO, "s").contains("unreachable"));
        assert!(explain_mount_errno(Errno::ETIMEDOUT, "s").contains("TCP 988"));
    }
}
