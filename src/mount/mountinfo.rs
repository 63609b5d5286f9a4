//! `/proc/self/mountinfo`, parsed. Idempotency decisions come from here, never from `stat`
//! on a path that may be a dead Lustre mount.

use std::path::{Path, PathBuf};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_id: u32,
    pub parent_id: u32,
    /// `major:minor` of the file system.
    pub device: String,
    /// The directory of the file system mounted here (`/` unless a bind of a subdirectory).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Per-mount options (`rw`, `ro`, `relatime`, ...).
    pub options: Vec<String>,
    pub fstype: String,
    pub source: String,
    pub super_options: Vec<String>,
}

impl MountEntry {
    /// True if mounted read-only.
    pub fn is_read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }

    /// The per-mount flags other than read-only, as `mount(2)` takes them: `nosuid`, `nodev`,
    /// `noexec`, `nodiratime` and the atime mode (`noatime`, `relatime`, else
    /// `MS_STRICTATIME`, which mountinfo shows as neither). A bind remount replaces the
    /// per-mount flags with what it is given, so a remount that keeps them passes these.
    pub fn per_mount_flags(&self) -> nix::mount::MsFlags {
        use nix::mount::MsFlags;
        let has = |o: &str| self.options.iter().any(|x| x == o);
        let mut flags = MsFlags::empty();
        for (option, flag) in [
            ("nosuid", MsFlags::MS_NOSUID),
            ("nodev", MsFlags::MS_NODEV),
            ("noexec", MsFlags::MS_NOEXEC),
            ("nodiratime", MsFlags::MS_NODIRATIME),
            ("noatime", MsFlags::MS_NOATIME),
            ("relatime", MsFlags::MS_RELATIME),
        ] {
            if has(option) {
                flags |= flag;
            }
        }
        if !has("noatime") && !has("relatime") {
            flags |= MsFlags::MS_STRICTATIME;
        }
        flags
    }
}

/// Undoes the kernel's octal escapes (`\040` for space, `\011`, `\012`, `\134`).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        // The kernel escapes bytes only (at most \377); anything larger is kept as it is.
        let value = octal.map(|d| d.iter().fold(0u32, |v, b| v * 8 + u32::from(b - b'0'))).filter(|v| *v <= 0o377);
        if let (b'\\', Some(v)) = (bytes[i], value) {
            out.push(v as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses one line; `None` if malformed.
pub fn parse_line(line: &str) -> Option<MountEntry> {
    let (pre, post) = line.split_once(" - ")?;
    let mut f = pre.split(' ');
    let mount_id = f.next()?.parse().ok()?;
    let parent_id = f.next()?.parse().ok()?;
    let device = f.next()?.to_string();
    let root = PathBuf::from(unescape(f.next()?));
    let mount_point = PathBuf::from(unescape(f.next()?));
    let options = f.next()?.split(',').map(str::to_string).collect();
    let mut p = post.split(' ');
    let fstype = p.next()?.to_string();
    let source = unescape(p.next()?);
    let super_options = p.next().unwrap_or("").split(',').filter(|s| !s.is_empty()).map(str::to_string).collect();
    Some(MountEntry { mount_id, parent_id, device, root, mount_point, options, fstype, source, super_options })
}

/// Parses the whole table, skipping malformed lines.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

/// The topmost mount at `path` (the last one listed wins when mounts are stacked).
pub fn at<'a>(table: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    table.iter().rev().find(|e| e.mount_point == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw
101 22 0:52 / /var/lib/kubelet/plugins/kubernetes.io/csi/fsx.csi.aws.com/abc/globalmount rw,relatime shared:70 - lustre 172.31.5.6@tcp:/abcdefgh rw,flock,lazystatfs
102 22 0:52 /team /var/lib/kubelet/pods/p1/volumes/kubernetes.io~csi/pv\\040one/mount ro,relatime shared:70 - lustre 172.31.5.6@tcp:/abcdefgh rw,flock
";

    #[test]
    fn parses_lustre_and_binds() {
        let t = parse(TABLE);
        assert_eq!(t.len(), 3);
        let stage =
            at(&t, Path::new("/var/lib/kubelet/plugins/kubernetes.io/csi/fsx.csi.aws.com/abc/globalmount")).unwrap();
        assert_eq!(stage.fstype, "lustre");
        assert_eq!(stage.source, "172.31.5.6@tcp:/abcdefgh");
        assert_eq!(stage.device, "0:52");
        assert!(!stage.is_read_only());
        let bind = at(&t, Path::new("/var/lib/kubelet/pods/p1/volumes/kubernetes.io~csi/pv one/mount")).unwrap();
        assert_eq!(bind.root, PathBuf::from("/team"));
        assert!(bind.is_read_only());
        assert_eq!(bind.super_options, vec!["rw", "flock"]);
    }

    /// Found by the fuzzer: `\777` overflowed a byte (a panic in debug builds).
    #[test]
    fn escapes_beyond_a_byte_are_kept_literally() {
        assert_eq!(unescape("a\\777b"), "a\\777b");
        assert_eq!(unescape("a\\040b\\134"), "a b\\");
        assert_eq!(unescape("end\\04"), "end\\04");
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert!(parse_line("garbage").is_none());
        assert_eq!(parse("x y z\n").len(), 0);
    }
}
