//! The controller's Lustre mounts: each file system it provisions directories on is mounted
//! once, at `<mount dir>/<file system id>`, with the same source and `mount(2)` call the node
//! plugin makes ([`crate::mount::lustre`]), and stays mounted for the controller's life (the
//! pod's mount namespace ends with it).

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::service::Roots;
use crate::fsx::{FileSystem, is_file_system_id};
use crate::mount::{Mounter, lustre, mountinfo};

/// [`Roots`] on Lustre mounts.
pub struct LustreRoots {
    dir: PathBuf,
    mounter: Arc<dyn Mounter>,
    /// One mount at a time: two first claims of a file system must not mount it twice.
    lock: Mutex<()>,
}

impl LustreRoots {
    /// Mounts go under `dir` (made, root's, 0700).
    pub fn new(dir: PathBuf, mounter: Arc<dyn Mounter>) -> Self {
        Self { dir, mounter, lock: Mutex::new(()) }
    }
}

impl Roots for LustreRoots {
    fn open(&self, fs: &FileSystem) -> io::Result<OwnedFd> {
        if !is_file_system_id(&fs.id) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a file system id"));
        }
        let _one = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        }
        let target = self.dir.join(&fs.id);
        match std::fs::create_dir(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let table = mountinfo::parse(&self.mounter.mount_table()?);
        if mountinfo::at(&table, &target).is_none() {
            let resolve = |h: &str| self.mounter.resolve(h);
            let source = lustre::source(&[vec![fs.dns_name.clone()]], &fs.mount_name, None, &resolve)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            let (flags, data) = lustre::flags_and_data(&[], &source)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            tracing::info!(call = %lustre::describe_call(&source, &target, "lustre", flags, &data), "mounting for subdirectory volumes");
            self.mounter.mount(Some(&source), &target, Some("lustre"), flags, Some(&data)).map_err(|errno| {
                io::Error::new(
                    io::Error::from(errno).kind(),
                    format!(
                        "mounting {} ({source}): {errno} (the controller needs the Lustre client and CAP_SYS_ADMIN)",
                        fs.id
                    ),
                )
            })?;
        }
        let fd = rustix::fs::openat(
            rustix::fs::CWD,
            &target,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        Ok(fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;
    use nix::mount::{MntFlags, MsFlags};
    use std::net::Ipv4Addr;
    use std::path::Path;

    /// Records mounts and shows them in its table.
    #[derive(Default)]
    struct Recorder {
        mounts: Mutex<Vec<(String, PathBuf, String, String)>>,
    }

    impl Mounter for Recorder {
        fn mount(&self, s: Option<&str>, t: &Path, f: Option<&str>, _: MsFlags, d: Option<&str>) -> Result<(), Errno> {
            let m = (s.unwrap_or("").into(), t.to_path_buf(), f.unwrap_or("").into(), d.unwrap_or("").into());
            self.mounts.lock().unwrap().push(m);
            Ok(())
        }
        fn unmount(&self, _: &Path, _: MntFlags) -> Result<(), Errno> {
            Ok(())
        }
        fn mount_table(&self) -> io::Result<String> {
            let lines: Vec<String> = self
                .mounts
                .lock()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(i, (s, t, f, _))| format!("{} 1 0:{i} / {} rw - {f} {s} rw", 100 + i, t.display()))
                .collect();
            Ok(lines.join("\n"))
        }
        fn statvfs(&self, _: &Path) -> Result<crate::mount::Usage, Errno> {
            Ok(Default::default())
        }
        fn resolve(&self, _: &str) -> io::Result<Ipv4Addr> {
            Ok(Ipv4Addr::new(10, 0, 0, 9))
        }
    }

    fn fs(id: &str) -> FileSystem {
        FileSystem {
            id: id.into(),
            dns_name: format!("{id}.fsx.us-east-1.amazonaws.com"),
            mount_name: "abcdefgh".into(),
            ..Default::default()
        }
    }

    #[test]
    fn each_file_system_is_mounted_once() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Arc::new(Recorder::default());
        let roots = LustreRoots::new(dir.path().join("mounts"), Arc::clone(&recorder) as Arc<dyn Mounter>);
        for _ in 0..3 {
            roots.open(&fs("fs-0123456789abcdef0")).unwrap();
        }
        roots.open(&fs("fs-0123456789abcdef1")).unwrap();
        let mounts = recorder.mounts.lock().unwrap().clone();
        assert_eq!(mounts.len(), 2, "{mounts:?}");
        let (source, target, fstype, data) = &mounts[0];
        assert_eq!(source, "10.0.0.9@tcp:/abcdefgh");
        assert_eq!(target, &dir.path().join("mounts/fs-0123456789abcdef0"));
        assert_eq!(fstype, "lustre");
        assert!(data.ends_with("device=10.0.0.9@tcp:/abcdefgh"), "{data}");
        let mut bad = fs("fs-0123456789abcdef0");
        bad.id = "../etc".into();
        assert!(roots.open(&bad).is_err());
    }
}
