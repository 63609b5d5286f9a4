//! Project ids and project quotas: the two ioctls `lfs project -p ID -s DIR` and
//! `lfs setquota -p ID -B LIMIT MOUNT` make, behind the [`Quotas`] seam.
//!
//! - A directory's project id and inheritance flag are set with `FS_IOC_FSSETXATTR`
//!   (`struct fsxattr`: `fsx_projid`, `FS_XFLAG_PROJINHERIT`), after reading the other fields
//!   with `FS_IOC_FSGETXATTR`, as `lfs_project.c` does. The same ioctl works on ext4 and XFS,
//!   so the stand-in file system of the tests exercises exactly this code.
//! - A project's block limit is set with Lustre's `OBD_IOC_QUOTACTL` on any directory of the
//!   mount (`struct if_quotactl`: `LUSTRE_Q_SETQUOTA`, `PRJQUOTA`, `QIF_BLIMITS`, limits in
//!   KiB), as `llapi_quotactl` does. Local file systems take `quotactl(2)` instead, which
//!   needs their block device: that is the tests' [`Quotas`] implementation, not this one.
//!
//! Layouts and numbers come from lustre-release `include/uapi/linux/lustre/lustre_user.h`
//! and `lustre_ioctl.h`; the tests check every size, offset and ioctl number against the
//! values computed from those headers.
//!
//! # The one exception to `unsafe_code`
//!
//! The crate denies unsafe code; this module is the only place that allows it, for the three
//! `ioctl(2)` calls below, each on a file descriptor the caller holds open (so valid for the
//! call) and a `#[repr(C)]` value whose size is the one encoded in the ioctl number (so the
//! kernel reads and writes only inside it). Neither rustix nor nix has safe wrappers for
//! these requests; nix's macros generate the calls, and nothing else here is unsafe.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `FS_XFLAG_PROJINHERIT`: new files and directories take the directory's project id.
pub const FS_XFLAG_PROJINHERIT: u32 = 0x0000_0200;
/// `PRJQUOTA`: the quota type of projects.
pub const PRJQUOTA: u32 = 2;
/// `LUSTRE_Q_SETQUOTA`.
pub const LUSTRE_Q_SETQUOTA: u32 = 0x80_0008;
/// `LUSTRE_Q_GETQUOTA`.
pub const LUSTRE_Q_GETQUOTA: u32 = 0x80_0007;
/// `QIF_BLIMITS`: the block hard and soft limits are valid.
pub const QIF_BLIMITS: u32 = 1;
/// `QIF_SPACE`: the space in use is valid (in a GETQUOTA answer).
pub const QIF_SPACE: u32 = 2;

/// `struct fsxattr` (linux/fs.h; lustre_user.h repeats it).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FsXattr {
    pub xflags: u32,
    pub extsize: u32,
    pub nextents: u32,
    pub projid: u32,
    pub pad: [u8; 12],
}

/// `struct obd_dqinfo`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct ObdDqinfo {
    pub bgrace: u64,
    pub igrace: u64,
    pub flags: u32,
    pub valid: u32,
}

/// `struct obd_dqblk`: block limits in KiB, space in bytes.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct ObdDqblk {
    pub bhardlimit: u64,
    pub bsoftlimit: u64,
    pub curspace: u64,
    pub ihardlimit: u64,
    pub isoftlimit: u64,
    pub curinodes: u64,
    pub btime: u64,
    pub itime: u64,
    pub valid: u32,
    pub padding: u32,
}

/// `struct if_quotactl`, without its flexible `qc_poolname` (read by the kernel only for pool
/// and LQA commands, which this driver never sends).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IfQuotactl {
    pub cmd: u32,
    pub qtype: u32,
    pub id: u32,
    pub stat: u32,
    pub valid: u32,
    pub idx: u32,
    pub dqinfo: ObdDqinfo,
    pub dqblk: ObdDqblk,
    pub obd_type: [u8; 16],
    /// `struct obd_uuid` (`char uuid[UUID_MAX]`, `UUID_MAX` 40).
    pub obd_uuid: [u8; 40],
}

impl IfQuotactl {
    /// A request for `cmd` on project `id`, everything else zero.
    pub fn project(cmd: u32, id: u32) -> Self {
        Self {
            cmd,
            qtype: PRJQUOTA,
            id,
            stat: 0,
            valid: 0,
            idx: 0,
            dqinfo: ObdDqinfo::default(),
            dqblk: ObdDqblk::default(),
            obd_type: [0; 16],
            obd_uuid: [0; 40],
        }
    }

    /// `lfs setquota -p ID -B LIMIT`: the hard block limit of project `id`, `bytes` rounded up
    /// to whole KiB (0 removes the limit), and no soft limit.
    pub fn set_block_limit(id: u32, bytes: u64) -> Self {
        let mut q = Self::project(LUSTRE_Q_SETQUOTA, id);
        q.dqblk.bhardlimit = bytes.div_ceil(1024);
        q.dqblk.bsoftlimit = 0;
        q.dqblk.valid = QIF_BLIMITS;
        q
    }
}

nix::ioctl_read!(fs_ioc_fsgetxattr, b'X', 31, FsXattr);
nix::ioctl_write_ptr!(fs_ioc_fssetxattr, b'X', 32, FsXattr);
nix::ioctl_readwrite!(obd_ioc_quotactl, b'f', 162, IfQuotactl);

/// What the subdirectory provisioner asks of quotas, so tests can stand in for Lustre's.
pub trait Quotas: Send + Sync + 'static {
    /// Gives the directory `dir` project id `project`, inherited by what is created in it.
    fn set_project(&self, dir: BorrowedFd<'_>, project: u32) -> io::Result<()>;
    /// The project id of `dir` and whether it is inherited.
    fn project_of(&self, dir: BorrowedFd<'_>) -> io::Result<(u32, bool)>;
    /// Sets the hard block limit of `project` on the file system of `any_dir` (0 removes it).
    fn set_limit(&self, any_dir: BorrowedFd<'_>, project: u32, bytes: u64) -> io::Result<()>;
}

/// Reads a directory's `fsxattr`.
pub fn get_fsxattr(dir: BorrowedFd<'_>) -> io::Result<FsXattr> {
    let mut x = FsXattr::default();
    // SAFETY: `dir` is open for the whole call; `x` is a live FsXattr, the size the request
    // encodes (checked by the tests), which the kernel fills.
    unsafe { fs_ioc_fsgetxattr(dir.as_raw_fd(), &mut x) }.map_err(io::Error::from)?;
    Ok(x)
}

/// Sets a directory's project id and inheritance, keeping its other attributes.
pub fn set_project_fsxattr(dir: BorrowedFd<'_>, project: u32) -> io::Result<()> {
    let mut x = get_fsxattr(dir)?;
    if x.projid == project && x.xflags & FS_XFLAG_PROJINHERIT != 0 {
        return Ok(());
    }
    x.projid = project;
    x.xflags |= FS_XFLAG_PROJINHERIT;
    // SAFETY: as above; the kernel only reads `x`.
    unsafe { fs_ioc_fssetxattr(dir.as_raw_fd(), &x) }.map_err(io::Error::from)?;
    Ok(())
}

/// Lustre's quotas: the ioctls `lfs` makes.
#[derive(Debug, Default, Clone, Copy)]
pub struct LustreQuotas;

impl Quotas for LustreQuotas {
    fn set_project(&self, dir: BorrowedFd<'_>, project: u32) -> io::Result<()> {
        set_project_fsxattr(dir, project)
    }

    fn project_of(&self, dir: BorrowedFd<'_>) -> io::Result<(u32, bool)> {
        let x = get_fsxattr(dir)?;
        Ok((x.projid, x.xflags & FS_XFLAG_PROJINHERIT != 0))
    }

    fn set_limit(&self, any_dir: BorrowedFd<'_>, project: u32, bytes: u64) -> io::Result<()> {
        let mut q = IfQuotactl::set_block_limit(project, bytes);
        // SAFETY: `any_dir` is open for the whole call; `q` is a live IfQuotactl of the size
        // the request encodes (checked by the tests); the kernel copies exactly that many bytes
        // in and, on success, back out.
        unsafe { obd_ioc_quotactl(any_dir.as_raw_fd(), &mut q) }.map_err(io::Error::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// `_IOC(dir, type, nr, size)` as asm-generic/ioctl.h defines it.
    const fn ioc(dir: u64, ty: u8, nr: u8, size: usize) -> u64 {
        (dir << 30) | ((size as u64) << 16) | ((ty as u64) << 8) | nr as u64
    }
    const WRITE: u64 = 1;
    const READ: u64 = 2;

    #[test]
    fn layouts_are_the_headers() {
        // struct fsxattr: four __u32 and 12 bytes of padding.
        assert_eq!(size_of::<FsXattr>(), 28);
        assert_eq!(offset_of!(FsXattr, projid), 12);
        // struct obd_dqinfo: two __u64, two __u32.
        assert_eq!(size_of::<ObdDqinfo>(), 24);
        // struct obd_dqblk: eight __u64, two __u32.
        assert_eq!(size_of::<ObdDqblk>(), 72);
        assert_eq!(offset_of!(ObdDqblk, bhardlimit), 0);
        assert_eq!(offset_of!(ObdDqblk, bsoftlimit), 8);
        assert_eq!(offset_of!(ObdDqblk, curspace), 16);
        assert_eq!(offset_of!(ObdDqblk, valid), 64);
        // struct if_quotactl: six __u32, the two structs, char[16], struct obd_uuid (40).
        assert_eq!(offset_of!(IfQuotactl, cmd), 0);
        assert_eq!(offset_of!(IfQuotactl, qtype), 4);
        assert_eq!(offset_of!(IfQuotactl, id), 8);
        assert_eq!(offset_of!(IfQuotactl, valid), 16);
        assert_eq!(offset_of!(IfQuotactl, dqinfo), 24);
        assert_eq!(offset_of!(IfQuotactl, dqblk), 48);
        assert_eq!(offset_of!(IfQuotactl, obd_type), 120);
        assert_eq!(offset_of!(IfQuotactl, obd_uuid), 136);
        assert_eq!(size_of::<IfQuotactl>(), 176);
    }

    #[test]
    fn ioctl_numbers_are_the_headers() {
        // FS_IOC_FSGETXATTR _IOR('X', 31, struct fsxattr), FS_IOC_FSSETXATTR _IOW('X', 32, ...):
        // the well-known 0x801c581f and 0x401c5820.
        assert_eq!(ioc(READ, b'X', 31, size_of::<FsXattr>()), 0x801c_581f);
        assert_eq!(ioc(WRITE, b'X', 32, size_of::<FsXattr>()), 0x401c_5820);
        assert_eq!(nix::request_code_read!(b'X', 31, size_of::<FsXattr>()) as u64, 0x801c_581f);
        assert_eq!(nix::request_code_write!(b'X', 32, size_of::<FsXattr>()) as u64, 0x401c_5820);
        // OBD_IOC_QUOTACTL _IOWR('f', 162, struct if_quotactl).
        let quotactl = ioc(READ | WRITE, b'f', 162, 176);
        assert_eq!(quotactl, 0xc0b0_66a2);
        assert_eq!(nix::request_code_readwrite!(b'f', 162, size_of::<IfQuotactl>()) as u64, quotactl);
    }

    #[test]
    fn a_block_limit_is_whole_kib_with_no_soft_limit() {
        let q = IfQuotactl::set_block_limit(1_000_042, 50 << 30);
        assert_eq!((q.cmd, q.qtype, q.id), (LUSTRE_Q_SETQUOTA, PRJQUOTA, 1_000_042));
        assert_eq!(q.dqblk.bhardlimit, 50 << 20);
        assert_eq!(q.dqblk.bsoftlimit, 0);
        assert_eq!(q.dqblk.valid, QIF_BLIMITS);
        assert_eq!(IfQuotactl::set_block_limit(1, 1025).dqblk.bhardlimit, 2);
        assert_eq!(IfQuotactl::set_block_limit(1, 0).dqblk.bhardlimit, 0);
    }

    /// On a file system without project ids (tmpfs here) the calls fail cleanly.
    #[test]
    fn a_file_system_without_lustre_quotas_says_so() {
        let dir = std::fs::File::open(std::env::temp_dir()).unwrap();
        use std::os::fd::AsFd;
        let e = LustreQuotas.set_limit(dir.as_fd(), 1, 1 << 30).unwrap_err();
        assert!(e.raw_os_error().is_some(), "{e}");
    }
}
