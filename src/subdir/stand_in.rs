//! Test only (cargo feature `lustre-stand-in`, with [`crate::mount::stand_in`]): project ids
//! and quotas for the stood-in file systems of the control-plane and node tiers, which are
//! directories of the machine's own file system, where neither Lustre's quota ioctl nor (on
//! a kernel without `CONFIG_QUOTA`) ext4's project quotas exist.
//!
//! A directory's project id and inheritance flag are kept in its extended attribute
//! [`PROJECT_XATTR`] (`"<id>"`: inheritance is always set, as the driver always asks), and a
//! project's block limit in the root directory's `user.fsx-csi-driver.limit.<id>` (bytes), so
//! the tiers' checks read both with `getfattr` and every controller sharing the stood-in file
//! system sees the same values. Everything else the controller does (the registry, the
//! directories, owners and modes, the trash) is the shipped code on a real directory tree.

use std::io;
use std::os::fd::BorrowedFd;

use rustix::fs::XattrFlags;

use super::quota::Quotas;

/// A directory's project id.
pub const PROJECT_XATTR: &str = "user.fsx-csi-driver.project";
/// The prefix of a project's limit, on the file system's root.
pub const LIMIT_XATTR_PREFIX: &str = "user.fsx-csi-driver.limit.";

/// [`Quotas`] kept in extended attributes (see the module's doc).
#[derive(Debug, Default, Clone, Copy)]
pub struct StandInQuotas;

impl Quotas for StandInQuotas {
    fn set_project(&self, dir: BorrowedFd<'_>, project: u32) -> io::Result<()> {
        rustix::fs::fsetxattr(dir, PROJECT_XATTR, project.to_string().as_bytes(), XattrFlags::empty())?;
        Ok(())
    }

    fn project_of(&self, dir: BorrowedFd<'_>) -> io::Result<(u32, bool)> {
        let mut buf = [0u8; 16];
        match rustix::fs::fgetxattr(dir, PROJECT_XATTR, &mut buf) {
            Ok(n) => {
                let id = std::str::from_utf8(&buf[..n]).ok().and_then(|s| s.parse().ok()).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "a project attribute that is not a number")
                })?;
                Ok((id, true))
            }
            Err(rustix::io::Errno::NODATA) => Ok((0, false)),
            Err(e) => Err(e.into()),
        }
    }

    fn set_limit(&self, any_dir: BorrowedFd<'_>, project: u32, bytes: u64) -> io::Result<()> {
        let name = format!("{LIMIT_XATTR_PREFIX}{project}");
        if bytes == 0 {
            return match rustix::fs::fremovexattr(any_dir, name.as_str()) {
                Ok(()) | Err(rustix::io::Errno::NODATA) => Ok(()),
                Err(e) => Err(e.into()),
            };
        }
        rustix::fs::fsetxattr(any_dir, name.as_str(), bytes.to_string().as_bytes(), XattrFlags::empty())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn projects_and_limits_round_trip_in_extended_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let d = std::fs::File::open(dir.path()).unwrap();
        let q = StandInQuotas;
        assert_eq!(q.project_of(d.as_fd()).unwrap(), (0, false));
        q.set_project(d.as_fd(), 1_000_007).unwrap();
        assert_eq!(q.project_of(d.as_fd()).unwrap(), (1_000_007, true));
        q.set_limit(d.as_fd(), 1_000_007, 5 << 30).unwrap();
        let mut buf = [0u8; 32];
        let n = rustix::fs::fgetxattr(d.as_fd(), "user.fsx-csi-driver.limit.1000007", &mut buf).unwrap();
        assert_eq!(&buf[..n], b"5368709120");
        q.set_limit(d.as_fd(), 1_000_007, 0).unwrap();
        q.set_limit(d.as_fd(), 1_000_007, 0).unwrap();
        assert!(rustix::fs::fgetxattr(d.as_fd(), "user.fsx-csi-driver.limit.1000007", &mut buf).is_err());
    }
}
