//! The driver's registry on the file system itself: which claim has which project id and
//! directory, kept where every controller sharing the file system sees it.
//!
//! ```text
//! <root>/.fsx-csi-driver/            0700 root: nothing of it is a tenant's
//!   projects/<id>                    the record of project <id> (JSON), created exclusively
//!   volumes/<sha256 of volume name>  the project id of a volume name
//!   trash/<id>                       a deleted volume's directory, until it is removed
//!   tmp/                             records being written
//! ```
//!
//! **Allocation** is a `link(2)` of a fully written record to `projects/<id>`, which fails if
//! the name exists: two controllers (two clusters sharing one file system) can never take one
//! id, with no lock and nothing in memory. The name is then bound the same way
//! (`volumes/<hash>`); a controller that loses that race gives its id back and takes the
//! winner's. A crash between the two leaves an id reserved by nobody, never a directory
//! without a record: the directory is made after both, and such an id is released an hour
//! later, when a controller next opens the registry ([`Registry::collect_orphans`]). An id
//! is released only once no directory holds it (after its trash is emptied); retained and
//! archived directories keep theirs.
//!
//! **No symlink is ever followed**: every path is walked one component at a time from an open
//! directory with `O_NOFOLLOW`, so a tenant's symlink (in their directory, or anywhere they
//! can write) can only make a call fail, never reach outside. Removal unlinks symlinks as
//! entries and descends only into real directories.
//!
//! Every call here blocks on the file system; callers run them off the async runtime with a
//! deadline, as the node runs its mounts.

use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use serde::{Deserialize, Serialize};

/// The driver's directory at the root of each file system it provisions directories on.
pub const STATE_DIR: &str = ".fsx-csi-driver";

/// The first project id the driver gives out. Lower ids are left to administrators
/// (`lfs project` by hand usually takes small numbers).
pub const FIRST_PROJECT: u32 = 1_000_000;

/// How many ids one allocation tries before giving up (each failure is another controller's
/// allocation in the same instant).
const ALLOCATION_TRIES: u32 = 1000;

/// The deepest directory tree removed (each level holds a descriptor).
const MAX_DEPTH: usize = 512;

/// The largest record read.
const MAX_RECORD: u64 = 64 * 1024;

/// What DeleteVolume does with the directory (`onDelete`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnDelete {
    /// Moved to the trash at once, removed in the background.
    #[default]
    Delete,
    /// Left as it is, with its project id.
    Retain,
    /// Renamed `archived-<namespace>-<claim>-<time>` beside where it was.
    Archive,
}

/// Where a volume is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Reserved or in use.
    #[default]
    Active,
    /// Deleted: its directory is in the trash (or gone), its id not yet released.
    Deleting,
    /// Deleted with `onDelete: retain`: the directory stays where it was, and keeps its id.
    Retained,
    /// Deleted with `onDelete: archive`: renamed to the record's `path`, and keeps its id.
    Archived,
}

/// What the registry keeps about one volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The CSI volume name (the PV's name).
    pub volume: String,
    /// The claim, `namespace/name`, when the provisioner said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// The directory, relative to the file system's root.
    pub path: String,
    /// The size asked for, which the project quota enforces when `quota` is set.
    pub capacity_bytes: i64,
    /// Whether the project quota is set.
    pub quota: bool,
    pub on_delete: OnDelete,
    #[serde(default)]
    pub state: State,
    /// When the record was made (seconds since the epoch).
    pub created: u64,
}

/// The registry of one file system, open at its root.
pub struct Registry {
    root: OwnedFd,
    projects: OwnedFd,
    volumes: OwnedFd,
    trash: OwnedFd,
    tmp: OwnedFd,
}

fn nofollow_dir() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Opens the directory `name` in `parent`, never through a symlink.
pub fn open_dir(parent: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(parent, name, nofollow_dir(), Mode::empty())?)
}

/// Makes (if missing) and opens the directory `name` in `parent`, with `mode` if made.
/// Returns whether it was made.
fn ensure_dir(parent: BorrowedFd<'_>, name: &str, mode: u32) -> io::Result<(OwnedFd, bool)> {
    let made = match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(mode)) {
        Ok(()) => true,
        Err(rustix::io::Errno::EXIST) => false,
        Err(e) => return Err(e.into()),
    };
    let fd = open_dir(parent, name)?;
    if made {
        // The umask does not decide: the mode is exactly `mode`.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    }
    Ok((fd, made))
}

fn volume_key(volume: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(volume.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn read_small(dir: BorrowedFd<'_>, name: &str) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let fd = match rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut bytes = Vec::new();
    std::fs::File::from(fd).take(MAX_RECORD).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

impl Registry {
    /// Opens (making it on first use) the registry under `root`, the root directory of a
    /// mounted file system.
    pub fn open(root: OwnedFd) -> io::Result<Self> {
        let (state, _) = ensure_dir(root.as_fd(), STATE_DIR, 0o700)?;
        let sub = |name: &str| ensure_dir(state.as_fd(), name, 0o700).map(|(fd, _)| fd);
        Ok(Self { projects: sub("projects")?, volumes: sub("volumes")?, trash: sub("trash")?, tmp: sub("tmp")?, root })
    }

    /// The file system's root.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// The record of project `id`, if there is one.
    pub fn record(&self, id: u32) -> io::Result<Option<Record>> {
        let Some(bytes) = read_small(self.projects.as_fd(), &id.to_string())? else { return Ok(None) };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| invalid(format!("the record of project {id}: {e}")))
    }

    /// The project id and record of the volume named `volume`, if it has one.
    pub fn find(&self, volume: &str) -> io::Result<Option<(u32, Record)>> {
        let Some(bytes) = read_small(self.volumes.as_fd(), &volume_key(volume))? else { return Ok(None) };
        let id: u32 = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| invalid(format!("the registry entry of a volume is not a project id: {bytes:?}")))?;
        match self.record(id)? {
            Some(record) if record.volume == volume => Ok(Some((id, record))),
            // A record that does not say this volume: the entry is stale (the id was released
            // after a crash between unlinking the two); nothing holds the name.
            _ => Ok(None),
        }
    }

    /// Writes `bytes` to a new file in `tmp/` and returns its name there.
    fn staged(&self, bytes: &[u8]) -> io::Result<String> {
        use std::io::Write;
        for _ in 0..16 {
            let name = format!("{}.{:016x}", std::process::id(), rand_u64());
            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = match rustix::fs::openat(self.tmp.as_fd(), name.as_str(), flags, Mode::from_raw_mode(0o600)) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            };
            let mut file = std::fs::File::from(fd);
            file.write_all(bytes)?;
            file.sync_all()?;
            return Ok(name);
        }
        Err(io::Error::other("cannot make a temporary file in the registry"))
    }

    /// Links the staged file `tmp` to `name` in `dir` (failing with `AlreadyExists` if it is
    /// there), then removes `tmp`.
    fn publish(&self, tmp: &str, dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
        let linked = rustix::fs::linkat(self.tmp.as_fd(), tmp, dir, name, AtFlags::empty());
        let _ = rustix::fs::unlinkat(self.tmp.as_fd(), tmp, AtFlags::empty());
        Ok(linked?)
    }

    /// Replaces `name` in `dir` with the staged file `tmp` (atomically).
    fn replace(&self, tmp: &str, dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
        let renamed = rustix::fs::renameat(self.tmp.as_fd(), tmp, dir, name);
        if renamed.is_err() {
            let _ = rustix::fs::unlinkat(self.tmp.as_fd(), tmp, AtFlags::empty());
        }
        Ok(renamed?)
    }

    /// The ids in `projects/`.
    pub fn projects(&self) -> io::Result<Vec<u32>> {
        numbered(self.projects.as_fd())
    }

    /// The ids whose directories are in the trash, to finish removing.
    pub fn trashed(&self) -> io::Result<Vec<u32>> {
        numbered(self.trash.as_fd())
    }

    /// Gives `record.volume` a project id and this record, or returns the ones it has
    /// (idempotent by volume name, across controllers).
    pub fn reserve(&self, record: &Record) -> io::Result<(u32, Record)> {
        if let Some(found) = self.find(&record.volume)? {
            return Ok(found);
        }
        let key = volume_key(&record.volume);
        let bytes = serde_json::to_vec(record).map_err(io::Error::other)?;
        let mut next =
            self.projects()?.into_iter().max().map_or(FIRST_PROJECT, |m| m.saturating_add(1)).max(FIRST_PROJECT);
        for _ in 0..ALLOCATION_TRIES {
            if next == u32::MAX {
                // u32::MAX is Lustre's "no project"; wrap to the lowest free id.
                next = FIRST_PROJECT;
            }
            let tmp = self.staged(&bytes)?;
            match self.publish(&tmp, self.projects.as_fd(), &next.to_string()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    next += 1;
                    continue;
                }
                Err(e) => return Err(e),
            }
            return self.bind(next, record, &key);
        }
        Err(io::Error::other(format!("no free project id after {ALLOCATION_TRIES} tries")))
    }

    /// Binds the volume name (`volumes/<key>`) to the id just reserved, or to the id another
    /// controller bound it to first (giving ours back). An entry naming an id whose record is
    /// not this volume's (only a hand edit makes one: names are unbound before ids are
    /// released) is moved aside and replaced, checking that what was moved is that entry.
    fn bind(&self, id: u32, record: &Record, key: &str) -> io::Result<(u32, Record)> {
        for _ in 0..4 {
            let tmp = self.staged(id.to_string().as_bytes())?;
            match self.publish(&tmp, self.volumes.as_fd(), key) {
                Ok(()) => return Ok((id, record.clone())),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    let _ = self.release(id);
                    return Err(e);
                }
            }
            match self.find(&record.volume)? {
                Some((found, rec)) if found == id => return Ok((id, rec)),
                Some(found) => {
                    self.release(id)?;
                    return Ok(found);
                }
                None => self.set_aside_stale(key)?,
            }
        }
        let _ = self.release(id);
        Err(io::Error::other("the volume's registry entry kept changing while reserving; retry"))
    }

    /// Moves a stale `volumes/<key>` out of the way; puts it back if, by then, it was another
    /// controller's fresh entry.
    fn set_aside_stale(&self, key: &str) -> io::Result<()> {
        let aside = format!("stale.{:016x}", rand_u64());
        match rustix::fs::renameat(self.volumes.as_fd(), key, self.tmp.as_fd(), aside.as_str()) {
            Ok(()) => {}
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let moved = read_small(self.tmp.as_fd(), &aside)?.unwrap_or_default();
        let fresh = std::str::from_utf8(&moved)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .and_then(|id| self.record(id).ok().flatten())
            .is_some_and(|r| volume_key(&r.volume) == key);
        if fresh {
            let _ = rustix::fs::linkat(self.tmp.as_fd(), aside.as_str(), self.volumes.as_fd(), key, AtFlags::empty());
        }
        let _ = rustix::fs::unlinkat(self.tmp.as_fd(), aside.as_str(), AtFlags::empty());
        Ok(())
    }

    /// Rewrites the record of `id` (a new capacity, a new state).
    pub fn rewrite(&self, id: u32, record: &Record) -> io::Result<()> {
        let tmp = self.staged(&serde_json::to_vec(record).map_err(io::Error::other)?)?;
        self.replace(&tmp, self.projects.as_fd(), &id.to_string())
    }

    /// Unbinds the volume name of `id`'s record (a CreateVolume of that name makes a new one);
    /// the id stays reserved.
    pub fn unbind(&self, id: u32, record: &Record) -> io::Result<()> {
        let key = volume_key(&record.volume);
        match read_small(self.volumes.as_fd(), &key)? {
            Some(bytes) if bytes == id.to_string().as_bytes() => {
                match rustix::fs::unlinkat(self.volumes.as_fd(), key.as_str(), AtFlags::empty()) {
                    Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            _ => Ok(()),
        }
    }

    /// Releases `id`: no directory holds it any more.
    pub fn release(&self, id: u32) -> io::Result<()> {
        match rustix::fs::unlinkat(self.projects.as_fd(), id.to_string().as_str(), AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Walks to the directory holding the last component of `path` (relative to the root),
    /// making the ones missing with `parent_mode` if `make`. Returns it and the last component.
    fn parent_of<'p>(&self, path: &'p str, make: Option<u32>) -> io::Result<Option<(OwnedFd, &'p str)>> {
        let mut parts: Vec<&str> = path.split('/').collect();
        let Some(last) = parts.pop().filter(|l| !l.is_empty()) else {
            return Err(invalid(format!("{path:?} is not a directory below the root")));
        };
        let mut dir = rustix::io::dup(&self.root)?;
        for part in parts {
            if matches!(part, "" | "." | "..") {
                return Err(invalid(format!("{path:?} is not a clean relative path")));
            }
            dir = match make {
                Some(mode) => ensure_dir(dir.as_fd(), part, mode)?.0,
                None => match open_dir(dir.as_fd(), part) {
                    Ok(fd) => fd,
                    Err(e) if e.raw_os_error() == Some(libc_enoent()) => return Ok(None),
                    Err(e) => return Err(e),
                },
            };
        }
        if matches!(last, "." | "..") {
            return Err(invalid(format!("{path:?} is not a clean relative path")));
        }
        Ok(Some((dir, last)))
    }

    /// Makes the directory `path` (relative to the root) owned by `uid:gid` with `mode`, and
    /// the directories above it as needed (root's, mode 0711: tenants pass through them but
    /// cannot list their neighbours). An existing directory is opened as it is. Returns it and
    /// whether it was made.
    pub fn make_directory(&self, path: &str, uid: u32, gid: u32, mode: u32) -> io::Result<(OwnedFd, bool)> {
        let Some((parent, last)) = self.parent_of(path, Some(0o711))? else {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        };
        let (dir, made) = ensure_dir(parent.as_fd(), last, 0o700)?;
        if made {
            rustix::fs::fchown(&dir, Some(rustix::fs::Uid::from_raw(uid)), Some(rustix::fs::Gid::from_raw(gid)))?;
            rustix::fs::fchmod(&dir, Mode::from_raw_mode(mode))?;
        }
        Ok((dir, made))
    }

    /// Opens the directory `path`, `None` if it is not there.
    pub fn open_directory(&self, path: &str) -> io::Result<Option<OwnedFd>> {
        let Some((parent, last)) = self.parent_of(path, None)? else { return Ok(None) };
        match open_dir(parent.as_fd(), last) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.raw_os_error() == Some(libc_enoent()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Moves project `id`'s directory `path` into the trash (one rename: atomic, however big
    /// the tree). `false` if it was not there (already moved, or removed by hand).
    pub fn move_to_trash(&self, id: u32, path: &str) -> io::Result<bool> {
        let Some((parent, last)) = self.parent_of(path, None)? else { return Ok(false) };
        match rustix::fs::renameat(parent.as_fd(), last, self.trash.as_fd(), id.to_string().as_str()) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Renames project `id`'s directory `path` to `new_name` beside it; returns the new path,
    /// `None` if the directory was not there.
    pub fn rename_beside(&self, path: &str, new_name: &str) -> io::Result<Option<String>> {
        let Some((parent, last)) = self.parent_of(path, None)? else { return Ok(None) };
        let renamed = rustix::fs::renameat_with(
            parent.as_fd(),
            last,
            parent.as_fd(),
            new_name,
            rustix::fs::RenameFlags::NOREPLACE,
        );
        match renamed {
            Ok(()) => Ok(Some(match path.rsplit_once('/') {
                Some((dir, _)) => format!("{dir}/{new_name}"),
                None => new_name.to_string(),
            })),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Collects what crashed calls left, once they are older than `grace` seconds at `now`:
    /// project ids reserved and never bound to their volume name (a crash between the two
    /// links of [`Registry::reserve`], or a lost race whose give-back did not happen), whose
    /// directory was never made, are released; files staged in `tmp/` and never linked are
    /// removed. `grace` keeps a reservation another controller is binding at this instant.
    /// Returns the ids released and the number of staged files removed.
    pub fn collect_orphans(&self, now: u64, grace: u64) -> io::Result<(Vec<u32>, usize)> {
        let mut released = Vec::new();
        for id in self.projects()? {
            let Some(record) = self.record(id)? else { continue };
            if record.state != State::Active || record.created.saturating_add(grace) > now {
                continue;
            }
            if self.find(&record.volume)?.is_some_and(|(bound, _)| bound == id) {
                continue;
            }
            // A directory at the path is not this reservation's to judge (it was made only
            // after a bind, so it is another volume's): leave the id.
            if self.open_directory(&record.path)?.is_some() {
                continue;
            }
            // Re-read: the record may have been rewritten since (the name bound by now).
            if self.find(&record.volume)?.is_some_and(|(bound, _)| bound == id) {
                continue;
            }
            self.release(id)?;
            released.push(id);
        }
        let mut staged = 0;
        for entry in Dir::read_from(self.tmp.as_fd())? {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            let Ok(st) = rustix::fs::statat(self.tmp.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW) else { continue };
            let mtime = u64::try_from(st.st_mtime).unwrap_or(0);
            if mtime.saturating_add(grace) > now || FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                continue;
            }
            match rustix::fs::unlinkat(self.tmp.as_fd(), name, AtFlags::empty()) {
                Ok(()) => staged += 1,
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok((released, staged))
    }

    /// Removes project `id`'s directory from the trash, however large, following no symlink.
    /// Done when it returns `Ok`; resumable after any failure or restart.
    pub fn empty_trash(&self, id: u32) -> io::Result<()> {
        remove_tree(self.trash.as_fd(), &id.to_string())
    }
}

fn libc_enoent() -> i32 {
    rustix::io::Errno::NOENT.raw_os_error()
}

/// The entries of `dir` that are project ids.
fn numbered(dir: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut ids = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if let Some(id) = std::str::from_utf8(name).ok().and_then(|s| s.parse::<u32>().ok())
            && s_is_canonical(name)
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

fn s_is_canonical(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(u8::is_ascii_digit) && (name == b"0" || name[0] != b'0')
}

/// Removes `name` in `parent` and everything below it. Symlinks, files, sockets and devices
/// are unlinked as entries; only real directories are entered (opened with `O_NOFOLLOW`), so
/// nothing outside the tree is touched whatever it holds.
pub fn remove_tree(parent: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let top = match open_dir(parent, name) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc_enoent()) => return Ok(()),
        // Not a directory (a file or a symlink put there): unlink it as an entry.
        Err(e)
            if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error())
                || e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) =>
        {
            return Ok(rustix::fs::unlinkat(parent, name, AtFlags::empty())?);
        }
        Err(e) => return Err(e),
    };
    // Each level: the directory, and the name of the child being removed in its parent.
    let mut stack: Vec<(OwnedFd, Vec<u8>)> = vec![(top, name.as_bytes().to_vec())];
    while let Some((dir, _)) = stack.last() {
        let mut descend = None;
        for entry in Dir::read_from(dir)? {
            let entry = entry?;
            let child = entry.file_name();
            if matches!(child.to_bytes(), b"." | b"..") {
                continue;
            }
            if entry.file_type() == FileType::Directory || entry.file_type() == FileType::Unknown {
                match rustix::fs::openat(dir, child, nofollow_dir(), Mode::empty()) {
                    Ok(fd) => {
                        descend = Some((fd, child.to_bytes().to_vec()));
                        break;
                    }
                    Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {}
                    Err(rustix::io::Errno::NOENT) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            unlink(dir.as_fd(), child, AtFlags::empty())?;
        }
        match descend {
            Some(level) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(io::Error::other(format!("a directory tree deeper than {MAX_DEPTH} levels")));
                }
                stack.push(level);
            }
            None => {
                // Empty now: remove it from its parent (the trash for the top).
                let (_, child) = stack.pop().unwrap_or_else(|| unreachable!());
                let child = OsStr::from_bytes(&child);
                match stack.last() {
                    Some((up, _)) => unlink(up.as_fd(), &cstring(child)?, AtFlags::REMOVEDIR)?,
                    None => unlink(parent, &cstring(child)?, AtFlags::REMOVEDIR)?,
                }
            }
        }
    }
    Ok(())
}

fn cstring(s: &OsStr) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(s.as_bytes()).map_err(|_| invalid("a name with a NUL byte".into()))
}

fn unlink(dir: BorrowedFd<'_>, name: &CStr, flags: AtFlags) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, flags) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A random number for temporary names (no crate needed: the clock and the hasher's seed).
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    fn registry(root: &Path) -> Registry {
        Registry::open(std::fs::File::open(root).unwrap().into()).unwrap()
    }

    fn record(volume: &str, path: &str) -> Record {
        Record {
            volume: volume.into(),
            claim: Some("team-a/scratch".into()),
            path: path.into(),
            capacity_bytes: 50 << 30,
            quota: true,
            on_delete: OnDelete::Delete,
            state: State::Active,
            created: 1,
        }
    }

    #[test]
    fn a_volume_name_gets_one_id_whatever_the_retries() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(dir.path());
        let (a, rec) = r.reserve(&record("pvc-1", "k8s/a")).unwrap();
        assert_eq!(a, FIRST_PROJECT);
        assert_eq!(r.reserve(&record("pvc-1", "k8s/other")).unwrap(), (a, rec.clone()));
        // Another controller, opening the same file system later.
        assert_eq!(registry(dir.path()).find("pvc-1").unwrap(), Some((a, rec)));
        let (b, _) = r.reserve(&record("pvc-2", "k8s/b")).unwrap();
        assert_eq!(b, a + 1);
        assert_eq!(r.projects().unwrap(), [a, b]);
        // The registry is root's alone.
        let meta = std::fs::metadata(dir.path().join(STATE_DIR)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        assert!(std::fs::read_dir(dir.path().join(STATE_DIR).join("tmp")).unwrap().next().is_none());
    }

    #[test]
    fn two_controllers_at_once_never_share_an_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let r = registry(&path);
                    // Every thread reserves the shared name and a name of its own.
                    let shared = r.reserve(&record("pvc-shared", "s")).unwrap().0;
                    let own = r.reserve(&record(&format!("pvc-{t}"), "o")).unwrap().0;
                    (shared, own)
                })
            })
            .collect();
        let got: Vec<(u32, u32)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let shared = got[0].0;
        assert!(got.iter().all(|(s, _)| *s == shared), "{got:?}");
        let mut own: Vec<u32> = got.iter().map(|(_, o)| *o).collect();
        own.sort_unstable();
        own.dedup();
        assert_eq!(own.len(), 8);
        assert!(!own.contains(&shared));
        // The losers of the shared name gave their ids back.
        assert_eq!(registry(&path).projects().unwrap().len(), 9);
    }

    #[test]
    fn directories_are_made_with_their_owner_and_mode_and_no_symlink_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(dir.path());
        let (fd, made) = r.make_directory("k8s/team-a/scratch", 1000, 1001, 0o2770).unwrap();
        assert!(made);
        drop(fd);
        let meta = std::fs::metadata(dir.path().join("k8s/team-a/scratch")).unwrap();
        assert_eq!((meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777), (1000, 1001, 0o2770));
        let parent = std::fs::metadata(dir.path().join("k8s/team-a")).unwrap();
        assert_eq!((parent.uid(), parent.permissions().mode() & 0o777), (0, 0o711));
        assert!(!r.make_directory("k8s/team-a/scratch", 1, 1, 0o700).unwrap().1);

        // A tenant's symlink on the way is never followed.
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("k8s/evil")).unwrap();
        assert!(r.make_directory("k8s/evil/x", 0, 0, 0o700).is_err());
        assert!(r.open_directory("k8s/evil/x").is_err());
        assert!(r.move_to_trash(FIRST_PROJECT, "k8s/evil/x").is_err());
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        assert!(r.open_directory("k8s/missing/x").unwrap().is_none());
        assert!(r.make_directory("k8s/../x", 0, 0, 0o700).is_err());
    }

    #[test]
    fn the_trash_is_emptied_without_leaving_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "precious").unwrap();
        let r = registry(dir.path());
        let (id, rec) = r.reserve(&record("pvc-1", "k8s/a")).unwrap();
        r.make_directory(&rec.path, 1000, 1000, 0o770).unwrap();
        // A tenant's tree: deep, files, a symlink to the outside, one to a directory, a fifo.
        let mut deep = dir.path().join("k8s/a");
        for i in 0..40 {
            deep = deep.join(format!("d{i}"));
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("f"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("k8s/a/link-dir")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("keep"), dir.path().join("k8s/a/d0/link-file")).unwrap();
        nix::unistd::mkfifo(&dir.path().join("k8s/a/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        for i in 0..100 {
            std::fs::write(dir.path().join(format!("k8s/a/file{i}")), "y").unwrap();
        }
        // A read-only directory inside does not stop root.
        std::fs::set_permissions(dir.path().join("k8s/a/d0"), std::fs::Permissions::from_mode(0o500)).unwrap();

        assert!(r.move_to_trash(id, &rec.path).unwrap());
        assert!(!dir.path().join("k8s/a").exists());
        assert!(!r.move_to_trash(id, &rec.path).unwrap());
        assert_eq!(r.trashed().unwrap(), [id]);
        r.empty_trash(id).unwrap();
        assert_eq!(r.trashed().unwrap(), Vec::<u32>::new());
        r.empty_trash(id).unwrap();
        assert_eq!(std::fs::read_to_string(outside.path().join("keep")).unwrap(), "precious");
        // Released: the id goes back, the name is free.
        r.unbind(id, &rec).unwrap();
        r.release(id).unwrap();
        assert_eq!(r.find("pvc-1").unwrap(), None);
        assert_eq!(r.projects().unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn a_released_id_is_given_again_and_a_stale_entry_does_not_hold_a_name() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(dir.path());
        let (id, rec) = r.reserve(&record("pvc-1", "a")).unwrap();
        r.unbind(id, &rec).unwrap();
        r.release(id).unwrap();
        assert_eq!(r.find("pvc-1").unwrap(), None);
        assert_eq!(r.reserve(&record("pvc-3", "c")).unwrap().0, id);
        // A hand-edited entry naming another volume's id.
        let entry = dir.path().join(STATE_DIR).join("volumes").join(volume_key("pvc-2"));
        std::fs::write(&entry, id.to_string()).unwrap();
        assert_eq!(r.find("pvc-2").unwrap(), None);
        let (other, _) = r.reserve(&record("pvc-2", "b")).unwrap();
        assert_eq!(other, id + 1);
        assert_eq!(r.find("pvc-2").unwrap().map(|f| f.0), Some(other));
        assert_eq!(r.find("pvc-3").unwrap().map(|f| f.0), Some(id));
    }

    #[test]
    fn reservations_a_crash_left_unbound_are_released_after_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(dir.path());
        // A bound volume, and one whose directory was made: never collected.
        let (bound, _) = r.reserve(&record("pvc-bound", "k8s/bound")).unwrap();
        let (made, rec) = r.reserve(&record("pvc-made", "k8s/made")).unwrap();
        r.make_directory(&rec.path, 0, 0, 0o770).unwrap();
        r.unbind(made, &rec).unwrap();
        // A crash between the two links: a record, no name.
        let (orphan, rec) = r.reserve(&record("pvc-crashed", "k8s/crashed")).unwrap();
        r.unbind(orphan, &rec).unwrap();
        // The same, but just now (another controller may be binding it).
        let mut young = record("pvc-young", "k8s/young");
        young.created = 1000;
        let (fresh, rec) = r.reserve(&young).unwrap();
        r.unbind(fresh, &rec).unwrap();
        // A staged file never linked, and one being written now.
        std::fs::write(dir.path().join(".fsx-csi-driver/tmp/1.00000000000000aa"), b"{}").unwrap();
        let (released, staged) = r.collect_orphans(1000, 600).unwrap();
        assert_eq!(released, vec![orphan]);
        assert_eq!(staged, 0, "the staged file is younger than the grace period");
        assert!(r.record(orphan).unwrap().is_none());
        assert!(r.record(bound).unwrap().is_some() && r.record(made).unwrap().is_some());
        assert!(r.record(fresh).unwrap().is_some());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let (released, staged) = r.collect_orphans(now + 3600, 600).unwrap();
        assert_eq!(released, vec![fresh]);
        assert_eq!(staged, 1);
        assert_eq!(r.find("pvc-bound").unwrap().map(|(id, _)| id), Some(bound));
        // The released id is taken again by the next reservation.
        let (again, _) = r.reserve(&record("pvc-next", "k8s/next")).unwrap();
        assert!(again > made);
    }

    #[test]
    fn archive_renames_beside() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(dir.path());
        r.make_directory("k8s/a", 0, 0, 0o700).unwrap();
        assert_eq!(r.rename_beside("k8s/a", "archived-x").unwrap().as_deref(), Some("k8s/archived-x"));
        assert!(dir.path().join("k8s/archived-x").is_dir());
        assert_eq!(r.rename_beside("k8s/a", "archived-y").unwrap(), None);
    }
}
