//! Paths from requests, and the one directory they may touch.
//!
//! The node plugin runs as root on every node, so every path in a request is hostile until
//! resolved. Two layers keep it inside the kubelet directory:
//!
//! 1. [`KubeletDir::check`] refuses, before anything is touched, a path that is not absolute,
//!    clean (no `.`, `..`, `//`), strictly below the kubelet directory, of sane length and
//!    free of control characters.
//! 2. A textual check cannot see symlinks, and a pod can create one inside its own volumes.
//!    So no call ever hands the kernel a path from a request: every path is resolved
//!    component by component from a descriptor of the kubelet directory (opened once, at
//!    start) with `O_NOFOLLOW`, and a symlink anywhere below the kubelet directory is refused
//!    ([`PathError::Symlink`]), never followed. The kernel calls then act on what was
//!    resolved: `mkdirat`/`unlinkat` on the parent's descriptor, and `mount(2)`, `umount2(2)`
//!    and `statvfs` on `/proc/self/fd/N` ([`fd_path`]), the kernel's link to an open
//!    descriptor, which a rename or a new symlink cannot redirect.
//!
//! The kubelet directory itself may legitimately be a symlink on some hosts: it is
//! canonicalized once, and requests may name it either way. Because nothing below it may be
//! a symlink, [`KubeletPath::real`] is exactly where the kernel's mount table shows a mount.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::text::Shown;

/// The longest path accepted from a request (the kernel's `PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;

/// The longest path component (the kernel's `NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;

/// Mode of the directories the driver creates below the kubelet directory (never
/// world-writable, whatever the umask).
const DIR_MODE: u32 = 0o750;

/// Why a path cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// Refused by the textual check.
    #[error("{field} {path} {why}")]
    Invalid { field: &'static str, path: String, why: String },
    /// A symlink below the kubelet directory.
    #[error(
        "{field} {path} is refused: {link} is a symbolic link, and the driver never follows symbolic links below the kubelet directory"
    )]
    Symlink { field: &'static str, path: String, link: String },
    /// Something on the way is not a directory.
    #[error("{field} {path} is refused: {at} is not a directory")]
    NotDirectory { field: &'static str, path: String, at: String },
    /// A path the driver would remove holds something it never creates there.
    #[error(
        "{field} {path} is {found}, which this driver never creates there; it was left in place (the driver removes only the empty directories it made)"
    )]
    NotOurs { field: &'static str, path: String, found: &'static str },
    /// A system call failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
}

impl PathError {
    /// True if the path (or one of its parents) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, PathError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// True if the request named a path it must not (the caller answers `InvalidArgument`).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, PathError::Io { .. })
    }
}

/// The kubelet directory: every path a request names must resolve below it.
#[derive(Debug)]
pub struct KubeletDir {
    /// As configured (`--kubelet-dir`), which is how the kubelet names paths.
    given: PathBuf,
    /// Canonical, as the kernel's mount table shows paths.
    real: PathBuf,
    /// Opened once at start; every resolution begins here.
    fd: OwnedFd,
}

/// A path from a request that passed the textual check: below the kubelet directory by
/// clean components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletPath {
    field: &'static str,
    /// The components below the kubelet directory (at least one, each a plain name).
    rel: PathBuf,
    /// The canonical kubelet directory joined with `rel`.
    real: PathBuf,
}

impl KubeletPath {
    /// Where the kernel's mount table shows a mount on this path.
    pub fn real(&self) -> &Path {
        &self.real
    }

    /// The request field this path came from.
    pub fn field(&self) -> &'static str {
        self.field
    }

    fn shown(&self) -> String {
        self.real.display().to_string()
    }

    fn leaf(&self) -> &OsStr {
        // rel has at least one component (KubeletDir::check refuses the directory itself).
        self.rel.file_name().unwrap_or_else(|| OsStr::new("."))
    }
}

/// `/proc/self/fd/N`: a path the kernel resolves to exactly what `fd` refers to.
pub fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn io_err(what: &'static str, path: &Path, e: Errno) -> PathError {
    PathError::Io { what, path: path.display().to_string(), source: io::Error::from(e) }
}

impl KubeletDir {
    /// Canonicalizes and opens `dir`. Fails if it is not a directory, or if `/proc` is not
    /// mounted (the driver acts on resolved paths through `/proc/self/fd`).
    pub fn new(dir: &Path) -> io::Result<Self> {
        let real = std::fs::canonicalize(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("kubelet directory {}: {e}", dir.display())))?;
        let fd = nix::fcntl::open(&real, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| {
                io::Error::new(io::Error::from(e).kind(), format!("kubelet directory {}: {e}", real.display()))
            })?;
        if !fd_path(&fd).exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "/proc/self/fd is not available: the node plugin needs /proc mounted",
            ));
        }
        Ok(Self { given: dir.to_path_buf(), real, fd })
    }

    /// The canonical kubelet directory.
    pub fn real(&self) -> &Path {
        &self.real
    }

    /// The textual check: `path` must be absolute, clean (no `.`, `..`, `//` or trailing
    /// `/`), at most [`MAX_PATH_LEN`] bytes without control characters, and strictly below
    /// the kubelet directory (as configured or canonical). Touches nothing.
    pub fn check(&self, field: &'static str, path: &str) -> Result<KubeletPath, PathError> {
        let fail = |why: String| Err(PathError::Invalid { field, path: Shown(path).to_string(), why });
        if path.is_empty() {
            return fail("is required".into());
        }
        if path.len() > MAX_PATH_LEN || path.chars().any(char::is_control) {
            return fail(format!("must be at most {MAX_PATH_LEN} bytes without control characters"));
        }
        let p = Path::new(path);
        if !p.is_absolute() {
            return fail("must be an absolute path".into());
        }
        if path.contains("//") || (path.len() > 1 && path.ends_with('/')) {
            return fail("must be a clean path (no // or trailing /)".into());
        }
        if path.split('/').any(|s| s == "." || s == "..") {
            return fail("must not contain . or .. components".into());
        }
        if path.split('/').any(|s| s.len() > MAX_NAME_LEN) {
            return fail(format!("has a component longer than {MAX_NAME_LEN} bytes"));
        }
        let rel = match p.strip_prefix(&self.given).or_else(|_| p.strip_prefix(&self.real)) {
            Ok(rel) if rel.components().next().is_some() => rel,
            _ => return fail(format!("must lie under the kubelet directory {}", self.given.display())),
        };
        debug_assert!(rel.components().all(|c| matches!(c, Component::Normal(_))));
        Ok(KubeletPath { field, rel: rel.to_path_buf(), real: self.real.join(rel) })
    }

    /// Opens the existing directory `p` (`O_PATH`), following no symlink. A mount on `p` is
    /// entered (the descriptor refers to the mounted file system's root).
    pub fn open(&self, p: &KubeletPath) -> Result<OwnedFd, PathError> {
        walk(&self.fd, &self.real, p.rel.as_os_str(), p.field, &p.shown(), false).map(|(fd, _)| fd)
    }

    /// Opens directory `p`, creating it and its missing parents (mode 0750), following no
    /// symlink. Returns the descriptor and whether `p` itself was created.
    pub fn create(&self, p: &KubeletPath) -> Result<(OwnedFd, bool), PathError> {
        walk(&self.fd, &self.real, p.rel.as_os_str(), p.field, &p.shown(), true)
    }

    /// Opens the parent directory of `p`, following no symlink, and returns it with the last
    /// component's name, for calls that act on a name in a directory.
    pub fn open_parent<'a>(&self, p: &'a KubeletPath) -> Result<(OwnedFd, &'a OsStr), PathError> {
        let parent = p.rel.parent().unwrap_or(Path::new(""));
        let fd = if parent.as_os_str().is_empty() {
            self.fd.try_clone().map_err(|e| PathError::Io { what: "opening", path: p.shown(), source: e })?
        } else {
            walk(&self.fd, &self.real, parent.as_os_str(), p.field, &p.shown(), false)?.0
        };
        Ok((fd, p.leaf()))
    }

    /// `/proc/self/fd/N/name` for the last component of `p` in its parent `parent` (as
    /// returned by [`KubeletDir::open_parent`]): what `umount2(…, UMOUNT_NOFOLLOW)` acts on.
    pub fn name_in(parent: &OwnedFd, name: &OsStr) -> PathBuf {
        fd_path(parent).join(name)
    }

    /// Removes `p` if it is what the driver creates there: an empty directory (a target or
    /// staging directory). A file, a symlink, a socket or a directory with contents is left in
    /// place and reported ([`PathError::NotOurs`]): a request may name any path below the
    /// kubelet directory, the kubelet's own files included. Absent (or an absent parent)
    /// counts as removed.
    pub fn remove(&self, p: &KubeletPath) -> Result<(), PathError> {
        let (parent, name) = match self.open_parent(p) {
            Ok(found) => found,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        let not_ours = |found| PathError::NotOurs { field: p.field, path: p.shown(), found };
        match unlinkat(&parent, name, UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(Errno::ENOTDIR) => {
                let kind = fstatat(&parent, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT);
                Err(not_ours(match kind {
                    Ok(SFlag::S_IFLNK) => "a symbolic link",
                    Ok(SFlag::S_IFREG) => "a file",
                    Ok(SFlag::S_IFSOCK) => "a socket",
                    _ => "not a directory",
                }))
            }
            Err(Errno::ENOTEMPTY | Errno::EEXIST) => Err(not_ours("a directory that is not empty")),
            Err(e) => Err(io_err("removing", &p.real, e)),
        }
    }

    /// Opens `p`'s last component inside `parent` (`O_PATH`, no symlink): after a mount on
    /// it, this is the new mount's root, where `/proc/self/fd/N` of the directory opened
    /// before the mount still refers to the directory underneath.
    pub fn open_in(parent: &OwnedFd, name: &OsStr, p: &KubeletPath) -> Result<OwnedFd, PathError> {
        open_component(parent, name, p.field, &p.shown(), &p.real)
    }
}

/// Opens the relative, clean path `sub` below the directory `dir` (for example a
/// subdirectory of a mounted file system), following no symlink.
pub fn open_below(dir: &OwnedFd, sub: &str, field: &'static str, shown: &Path) -> Result<OwnedFd, PathError> {
    check_subdirectory(sub).map_err(|why| PathError::Invalid { field, path: Shown(sub).to_string(), why })?;
    if sub.is_empty() {
        return dir.try_clone().map_err(|e| PathError::Io {
            what: "opening",
            path: shown.display().to_string(),
            source: e,
        });
    }
    walk(dir, shown, OsStr::new(sub), field, &shown.join(sub).display().to_string(), false).map(|(fd, _)| fd)
}

/// Checks a relative subdirectory (a volume attribute): clean, no `.` or `..`, not
/// absolute, without control characters. Empty means none.
pub fn check_subdirectory(sub: &str) -> Result<(), String> {
    if sub.is_empty() {
        return Ok(());
    }
    if sub.len() > 1024 || sub.chars().any(char::is_control) || sub.contains("//") || sub.ends_with('/') {
        return Err(format!("subdirectory {} must be a clean relative path of at most 1024 bytes", Shown(sub)));
    }
    if sub.split('/').any(|c| c.len() > MAX_NAME_LEN) {
        return Err(format!("subdirectory {} has a component longer than {MAX_NAME_LEN} bytes", Shown(sub)));
    }
    let p = Path::new(sub);
    if p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!("subdirectory {} must be relative, without . or .. components", Shown(sub)));
    }
    Ok(())
}

/// Walks `rel` (plain components) from `start`, one `openat(O_NOFOLLOW)` per component,
/// creating missing directories if `create`. `base` is where `start` is, for messages.
fn walk(
    start: &OwnedFd,
    base: &Path,
    rel: &OsStr,
    field: &'static str,
    shown: &str,
    create: bool,
) -> Result<(OwnedFd, bool), PathError> {
    let mut at = base.to_path_buf();
    let mut fd: Option<OwnedFd> = None;
    let mut created = false;
    for comp in Path::new(rel).components() {
        let Component::Normal(name) = comp else {
            return Err(PathError::Invalid {
                field,
                path: shown.to_string(),
                why: "has a component that is not a plain name".into(),
            });
        };
        let dir = fd.as_ref().unwrap_or(start);
        at.push(name);
        created = false;
        let next = match open_component(dir, name, field, shown, &at) {
            Err(e) if create && e.is_not_found() => {
                match mkdirat(dir, name, Mode::from_bits_truncate(DIR_MODE)) {
                    Ok(()) => created = true,
                    Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io_err("creating", &at, e)),
                }
                open_component(dir, name, field, shown, &at)?
            }
            other => other?,
        };
        fd = Some(next);
    }
    match fd {
        Some(fd) => Ok((fd, created)),
        None => start.try_clone().map(|fd| (fd, false)).map_err(|e| PathError::Io {
            what: "opening",
            path: shown.to_string(),
            source: e,
        }),
    }
}

/// Opens directory `name` in `dir` without following a symlink; says which it was if the
/// open fails because `name` is a symlink or not a directory.
fn open_component(
    dir: &impl AsFd,
    name: &OsStr,
    field: &'static str,
    shown: &str,
    at: &Path,
) -> Result<OwnedFd, PathError> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match openat(dir.as_fd(), name, flags, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(e @ (Errno::ENOTDIR | Errno::ELOOP)) => {
            let kind = fstatat(dir.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT);
            match kind {
                Ok(k) if k == SFlag::S_IFLNK => {
                    Err(PathError::Symlink { field, path: shown.to_string(), link: at.display().to_string() })
                }
                Ok(_) => Err(PathError::NotDirectory { field, path: shown.to_string(), at: at.display().to_string() }),
                Err(_) => Err(io_err("opening", at, e)),
            }
        }
        Err(e) => Err(io_err("opening", at, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> (tempfile::TempDir, KubeletDir) {
        let tmp = tempfile::tempdir().unwrap();
        let k = tmp.path().join("kubelet");
        std::fs::create_dir(&k).unwrap();
        let kd = KubeletDir::new(&k).unwrap();
        (tmp, kd)
    }

    #[test]
    fn textual_check() {
        let (tmp, k) = dir();
        let root = tmp.path().join("kubelet");
        let ok = format!("{}/pods/p/volumes/kubernetes.io~csi/pv/mount", root.display());
        assert_eq!(k.check("target_path", &ok).unwrap().real(), Path::new(&ok));
        for bad in [
            String::new(),
            "relative/path".into(),
            root.display().to_string(),
            format!("{}/../../etc", root.display()),
            format!("{}/pods/../../../etc/passwd", root.display()),
            format!("{}/./x", root.display()),
            format!("{}//x", root.display()),
            format!("{}/x/", root.display()),
            format!("{}x/y", root.display()),
            "/etc/kubernetes".into(),
            format!("{}/x\n", root.display()),
            format!("{}/x\u{1b}[2J", root.display()),
            format!("{}/{}", root.display(), "a".repeat(5000)),
            // Found by the fuzzer: a component past NAME_MAX failed later with ENAMETOOLONG
            // (Internal) instead of being refused.
            format!("{}/{}", root.display(), "a".repeat(256)),
        ] {
            let e = k.check("target_path", &bad).unwrap_err();
            assert!(e.is_refusal());
            let text = e.to_string();
            assert!(text.starts_with("target_path"), "{text}");
            assert!(text.len() < 600, "message echoes the whole value: {} bytes", text.len());
            assert!(!text.chars().any(|c| c.is_control()), "{text:?}");
        }
    }

    #[test]
    fn a_symlinked_kubelet_dir_is_canonicalized_once() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("data/kubelet");
        std::fs::create_dir_all(&real).unwrap();
        let link = tmp.path().join("kubelet");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let k = KubeletDir::new(&link).unwrap();
        let p = k.check("staging_target_path", &format!("{}/plugins/x/globalmount", link.display())).unwrap();
        assert_eq!(p.real(), real.canonicalize().unwrap().join("plugins/x/globalmount"));
        let (_fd, created) = k.create(&p).unwrap();
        assert!(created);
        assert!(real.join("plugins/x/globalmount").is_dir());
        // Named through the canonical path too.
        k.check("staging_target_path", &p.real().display().to_string()).unwrap();
    }

    #[test]
    fn nothing_outside_is_created_or_removed_through_a_symlink() {
        let (tmp, k) = dir();
        let root = tmp.path().join("kubelet");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(outside.join("emptydir")).unwrap();
        std::fs::write(outside.join("victim_file"), "keep").unwrap();
        std::fs::create_dir_all(root.join("pods/p1")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("pods/p1/link")).unwrap();

        for leaf in ["victim_file", "emptydir", "new/deeper"] {
            let p = k.check("target_path", &format!("{}/pods/p1/link/{leaf}", root.display())).unwrap();
            let e = k.remove(&p).unwrap_err();
            assert!(matches!(e, PathError::Symlink { .. }), "{e}");
            assert!(e.to_string().contains("symbolic link"), "{e}");
            let e = k.create(&p).unwrap_err();
            assert!(matches!(e, PathError::Symlink { .. }), "{e}");
            assert!(k.open(&p).is_err());
            assert!(k.open_parent(&p).is_err());
        }
        assert_eq!(std::fs::read_to_string(outside.join("victim_file")).unwrap(), "keep");
        assert!(outside.join("emptydir").is_dir());
        assert!(!outside.join("new").exists());

        // The link itself, as the last component, is neither followed nor removed.
        let p = k.check("target_path", &format!("{}/pods/p1/link", root.display())).unwrap();
        assert!(matches!(k.open(&p).unwrap_err(), PathError::Symlink { .. }));
        let e = k.remove(&p).unwrap_err();
        assert!(e.to_string().contains("is a symbolic link, which this driver never creates"), "{e}");
        assert!(e.is_refusal());
        assert!(root.join("pods/p1/link").is_symlink());
        assert!(outside.join("victim_file").exists());
    }

    #[test]
    fn create_open_and_remove() {
        let (tmp, k) = dir();
        let root = tmp.path().join("kubelet");
        let p = k.check("target_path", &format!("{}/pods/p/volumes/v/mount", root.display())).unwrap();
        assert!(k.open(&p).unwrap_err().is_not_found());
        let (_fd, created) = k.create(&p).unwrap();
        assert!(created);
        let (_fd, created) = k.create(&p).unwrap();
        assert!(!created);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(root.join("pods")).unwrap().permissions().mode() & 0o002, 0);
        k.open(&p).unwrap();
        k.remove(&p).unwrap();
        assert!(!p.real().exists());
        k.remove(&p).unwrap();
        // A file where a directory was expected, or a directory with contents, is left alone:
        // the driver never made them.
        std::fs::write(p.real(), "x").unwrap();
        assert!(matches!(k.open(&p).unwrap_err(), PathError::NotDirectory { .. }));
        let e = k.remove(&p).unwrap_err();
        assert!(matches!(e, PathError::NotOurs { found: "a file", .. }), "{e}");
        assert_eq!(std::fs::read(p.real()).unwrap(), b"x");
        std::fs::remove_file(p.real()).unwrap();
        std::fs::create_dir_all(p.real().join("data")).unwrap();
        let e = k.remove(&p).unwrap_err();
        assert!(matches!(e, PathError::NotOurs { found: "a directory that is not empty", .. }), "{e}");
        assert!(p.real().join("data").is_dir());
        // An absent parent counts as removed.
        let gone = k.check("target_path", &format!("{}/pods/none/x", root.display())).unwrap();
        k.remove(&gone).unwrap();
    }

    #[test]
    fn subdirectories_never_follow_links() {
        let (tmp, k) = dir();
        let root = tmp.path().join("kubelet");
        std::fs::create_dir_all(root.join("stage/team/a")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("stage/team/etc")).unwrap();
        let stage = k.open(&k.check("staging_target_path", &format!("{}/stage", root.display())).unwrap()).unwrap();
        open_below(&stage, "team/a", "subdirectory", &root.join("stage")).unwrap();
        let e = open_below(&stage, "team/etc", "subdirectory", &root.join("stage")).unwrap_err();
        assert!(matches!(e, PathError::Symlink { .. }), "{e}");
        for bad in ["/abs", "../up", "a/../../b", "./a", "a//b", "a/", "a\nb"] {
            assert!(open_below(&stage, bad, "subdirectory", &root.join("stage")).unwrap_err().is_refusal(), "{bad}");
        }
    }

    #[test]
    fn subdirectory_check() {
        check_subdirectory("").unwrap();
        check_subdirectory("team/a").unwrap();
        for bad in ["/abs", "../up", "a/../../b", "./a", "a//b", "a/", "a\u{0}b"] {
            assert!(check_subdirectory(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(check_subdirectory(&"a".repeat(2000)).unwrap_err().len() < 400);
    }
}
