//! Test composition for the node plugin: the real syscall mounter, with tmpfs standing in
//! for Lustre in the stage step, and a seam that makes chosen calls block.
//!
//! - `mount(…, "lustre", …)` becomes `mount(same source, target, "tmpfs", same flags,
//!   "size=64m")`; bind mounts and remounts go through unchanged;
//! - the mount table reports those tmpfs mounts (recognised by their `…@tcp:/…` source) as
//!   `lustre`, as a real Lustre client would;
//! - host names resolve to 127.0.0.1 (there is no DNS here);
//! - [`TmpfsLustre::dirs`] are made in each new file system;
//! - [`Blocker`] makes mount, unmount or statvfs calls on a chosen path hang until released.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use fsx_csi_driver::mount::{Mounter, SyscallMounter, Usage};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

/// Moves this process into a private mount namespace (with `/` made private), so every mount
/// a test makes stays away from the machine and ends with the process. Must be called while
/// the process is still single-threaded.
pub fn enter_private_mount_namespace() -> nix::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
    nix::mount::mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
}

/// Makes calls on one path block until released.
#[derive(Default)]
pub struct Blocker {
    state: Mutex<Option<PathBuf>>,
    released: Condvar,
}

impl Blocker {
    /// Calls on `path` block from now on.
    pub fn block(&self, path: &Path) {
        *self.state.lock().unwrap() = Some(path.to_path_buf());
    }

    /// Blocked calls proceed; later calls do not block.
    pub fn release(&self) {
        *self.state.lock().unwrap() = None;
        self.released.notify_all();
    }

    fn wait_if_blocked(&self, path: &Path) {
        let path = real_path(path);
        let mut state = self.state.lock().unwrap();
        while state.as_deref() == Some(path.as_path()) {
            state = self.released.wait(state).unwrap();
        }
    }
}

/// The path a `/proc/self/fd/N[/name]` handle stands for (the driver passes only such
/// handles to the mounter), so tests can name paths as the requests did.
pub fn real_path(path: &Path) -> PathBuf {
    let mut parts = path.strip_prefix("/proc/self/fd").ok().map(|rest| rest.components());
    let Some(fd) = parts.as_mut().and_then(|c| c.next()) else { return path.to_path_buf() };
    let rest: PathBuf = parts.map(|c| c.collect()).unwrap_or_default();
    match std::fs::read_link(Path::new("/proc/self/fd").join(fd)) {
        Ok(dir) => dir.join(rest),
        Err(_) => path.to_path_buf(),
    }
}

/// See the module docs.
#[derive(Default, Clone)]
pub struct TmpfsLustre {
    pub blocker: Arc<Blocker>,
    /// Directories made in each new "Lustre" file system, as a controller would have made
    /// them for subdirectory volumes.
    pub dirs: Arc<Mutex<Vec<String>>>,
}

impl Mounter for TmpfsLustre {
    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno> {
        self.blocker.wait_if_blocked(target);
        if fstype == Some("lustre") {
            let data = data.unwrap_or("");
            // The driver must append device= last; check it here as the kernel would rely on it.
            assert!(
                data.rsplit(',').next().is_some_and(|d| d.starts_with("device=")),
                "device= is not last in {data:?}"
            );
            SyscallMounter.mount(source, target, Some("tmpfs"), flags, Some("size=64m"))?;
            let top = real_path(target);
            for dir in self.dirs.lock().unwrap().iter() {
                std::fs::create_dir_all(top.join(dir)).map_err(|_| Errno::EIO)?;
            }
            return Ok(());
        }
        SyscallMounter.mount(source, target, fstype, flags, data)
    }

    fn unmount(&self, target: &Path, flags: MntFlags) -> Result<(), Errno> {
        self.blocker.wait_if_blocked(target);
        SyscallMounter.unmount(target, flags)
    }

    fn mount_table(&self) -> std::io::Result<String> {
        let text = SyscallMounter.mount_table()?;
        Ok(text
            .lines()
            .map(|line| match line.split_once(" - tmpfs ") {
                Some((pre, post)) if post.split(' ').next().is_some_and(|src| src.contains("@tcp:/")) => {
                    format!("{pre} - lustre {post}\n")
                }
                _ => format!("{line}\n"),
            })
            .collect())
    }

    fn statvfs(&self, path: &Path) -> Result<Usage, Errno> {
        self.blocker.wait_if_blocked(path);
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
