//! What `mount.lustre` does before `mount(2)`, as pure functions (lustre-release
//! `mount_lustre.c`, `obd_mount.c`):
//!
//! - the kernel cannot resolve host names, so each host becomes an IPv4 NID (`1.2.3.4@tcp`);
//!   source grammar `nid[,nid…][:nid[,nid…]…]:/fsname[/subdir]` (comma: same server, colon:
//!   failover);
//! - generic options become `MS_*` flags by exact match, with `MS_STRICTATIME` unless
//!   `noatime` or `relatime` is given; `defaults`, `auto`, `noauto`, `_netdev` are dropped;
//! - Lustre options go into the data string, and `device=<source>` is appended last, since
//!   the kernel reads everything after it as the device.

use crate::text::Shown;
use std::net::Ipv4Addr;

use nix::mount::MsFlags;

/// FSx's documented mount options, used when a volume gives none.
pub const DEFAULT_OPTIONS: &[&str] = &["relatime", "flock"];

/// The kernel reads mount data from one page.
pub const MAX_DATA_LEN: usize = 4095;

/// Generic options and their flags: (name, flag to set, flag to clear).
const GENERIC: &[(&str, MsFlags, MsFlags)] = &[
    ("ro", MsFlags::MS_RDONLY, MsFlags::empty()),
    ("rw", MsFlags::empty(), MsFlags::MS_RDONLY),
    ("nosuid", MsFlags::MS_NOSUID, MsFlags::empty()),
    ("suid", MsFlags::empty(), MsFlags::MS_NOSUID),
    ("nodev", MsFlags::MS_NODEV, MsFlags::empty()),
    ("dev", MsFlags::empty(), MsFlags::MS_NODEV),
    ("noexec", MsFlags::MS_NOEXEC, MsFlags::empty()),
    ("exec", MsFlags::empty(), MsFlags::MS_NOEXEC),
    ("sync", MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
    ("async", MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
    ("dirsync", MsFlags::MS_DIRSYNC, MsFlags::empty()),
    ("noatime", MsFlags::MS_NOATIME, MsFlags::empty()),
    ("atime", MsFlags::empty(), MsFlags::MS_NOATIME),
    ("nodiratime", MsFlags::MS_NODIRATIME, MsFlags::empty()),
    ("diratime", MsFlags::empty(), MsFlags::MS_NODIRATIME),
    ("relatime", MsFlags::MS_RELATIME, MsFlags::empty()),
    ("norelatime", MsFlags::empty(), MsFlags::MS_RELATIME),
    ("strictatime", MsFlags::MS_STRICTATIME, MsFlags::empty()),
    ("lazytime", MsFlags::MS_LAZYTIME, MsFlags::empty()),
    ("nolazytime", MsFlags::empty(), MsFlags::MS_LAZYTIME),
];

/// Options `mount.lustre` drops (they mean something only to `mount` and fstab).
const DROPPED: &[&str] = &["defaults", "auto", "noauto", "_netdev", "nofail"];

/// Lustre client options passed to the kernel in the data string.
const LUSTRE: &[&str] = &[
    "flock",
    "localflock",
    "noflock",
    "user_xattr",
    "nouser_xattr",
    "lazystatfs",
    "nolazystatfs",
    "user_fid2path",
    "nouser_fid2path",
    "acl",
    "noacl",
    "checksum",
    "nochecksum",
    "verbose",
    "noverbose",
    "always_ping",
    "noencrypt",
    "test_dummy_encryption",
];

/// A mount option or source that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LustreError {
    #[error("mount option {} is not allowed: {}", Shown(.0), .1)]
    Option(String, String),
    #[error("cannot resolve {} to an IPv4 address: {reason}", Shown(host))]
    Resolve { host: String, reason: String },
    #[error("invalid Lustre source: {0}")]
    Source(String),
}

/// Checks mount options against the allow-list. Options arrive one per entry (the volume
/// capability's `mount_flags`, from PV or StorageClass `mountOptions`).
pub fn check_options(options: &[String]) -> Result<(), LustreError> {
    for o in options {
        let refuse = |why: &str| Err(LustreError::Option(o.clone(), why.to_string()));
        if o.contains(',') || o.contains('\n') || o.contains('\r') || o.contains('\0') {
            return refuse("give one option per mountOptions entry, without commas or line breaks");
        }
        if o.starts_with("device=") || o.starts_with("mgsname=") {
            return refuse("the driver sets the device itself");
        }
        let name = o.as_str();
        if !(GENERIC.iter().any(|(g, _, _)| *g == name) || DROPPED.contains(&name) || LUSTRE.contains(&name)) {
            let mut allowed: Vec<&str> = GENERIC.iter().map(|(g, _, _)| *g).collect();
            allowed.extend(LUSTRE);
            return Err(LustreError::Option(o.clone(), format!("unknown option; allowed are {}", allowed.join(", "))));
        }
    }
    Ok(())
}

/// `mount(2)` flags and data for `options` (already checked) and a resolved `source`.
pub fn flags_and_data(options: &[String], source: &str) -> Result<(MsFlags, String), LustreError> {
    check_options(options)?;
    let mut flags = MsFlags::empty();
    let mut data: Vec<&str> = Vec::new();
    let mut atime_given = false;
    for o in options {
        let o = o.as_str();
        if let Some((_, set, clear)) = GENERIC.iter().find(|(g, _, _)| *g == o) {
            flags.insert(*set);
            flags.remove(*clear);
            atime_given |= o == "noatime" || o == "relatime";
        } else if DROPPED.contains(&o) {
            continue;
        } else if !data.contains(&o) {
            data.push(o);
        }
    }
    if !atime_given {
        flags.insert(MsFlags::MS_STRICTATIME);
    }
    let device = format!("device={source}");
    data.push(&device);
    let data = data.join(",");
    if data.len() > MAX_DATA_LEN {
        return Err(LustreError::Option(data, format!("mount data is longer than {MAX_DATA_LEN} bytes")));
    }
    Ok((flags, data))
}

/// The generic options that are per mount point (a bind remount sets them), as opposed to the
/// file system's: `ro`/`rw`, `[no]suid`, `[no]dev`, `[no]exec` and the atime modes.
const PER_MOUNT: &[&str] = &[
    "ro",
    "rw",
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "noexec",
    "exec",
    "noatime",
    "atime",
    "nodiratime",
    "diratime",
    "relatime",
    "norelatime",
    "strictatime",
];

/// Splits checked `options` for a file system mounted once and bound per volume: the options
/// of the file system's one mount (Lustre's, `sync`, `lazytime`, ...: two volumes share the
/// mount only if these are equal), and the per-mount flags of the volume's bind (`MS_RDONLY`,
/// `MS_NOSUID`, ..., with the atime mode as [`flags_and_data`] chooses it).
pub fn split_per_mount(options: &[String]) -> Result<(Vec<String>, MsFlags), LustreError> {
    check_options(options)?;
    let (per_mount, shared): (Vec<String>, Vec<String>) =
        options.iter().cloned().partition(|o| PER_MOUNT.contains(&o.as_str()));
    let (flags, _) = flags_and_data(&per_mount, "-")?;
    let mask = MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC
        | MsFlags::MS_NOATIME
        | MsFlags::MS_NODIRATIME
        | MsFlags::MS_RELATIME
        | MsFlags::MS_STRICTATIME;
    Ok((shared, flags & mask))
}

/// Flag names as in the man page: `MS_RDONLY|MS_RELATIME` (or `0`).
pub fn flag_names(flags: MsFlags) -> String {
    let names: Vec<&str> = flags.iter_names().map(|(name, _)| name).collect();
    if names.is_empty() { "0".to_string() } else { names.join("|") }
}

/// The call as C would write it, for logs and error messages.
pub fn describe_call(source: &str, target: &std::path::Path, fstype: &str, flags: MsFlags, data: &str) -> String {
    format!(
        "mount({source_shown}, {:?}, {fstype_shown}, {}, {data_shown})",
        target.display().to_string(),
        flag_names(flags),
        source_shown = Shown(source),
        fstype_shown = Shown(fstype),
        data_shown = Shown(data)
    )
}

/// A host name or IPv4 address: 1–253 chars of labels `[A-Za-z0-9-]` (not starting or ending
/// with `-`) separated by dots.
pub fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// A Lustre fsname / FSx MountName: 1–8 of `[A-Za-z0-9_-]`.
pub fn is_mount_name(s: &str) -> bool {
    (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Turns one host into a NID: an existing NID is kept, an IPv4 literal or a resolved name
/// gets `@tcp`.
fn nid(host: &str, resolve: &dyn Fn(&str) -> std::io::Result<Ipv4Addr>) -> Result<String, LustreError> {
    if let Some((addr, net)) = host.split_once('@') {
        // Already a NID: an IPv4 address on a Lustre network such as tcp, tcp1 or o2ib.
        let net_ok =
            !net.is_empty() && net.len() <= 16 && net.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if addr.parse::<Ipv4Addr>().is_ok() && net_ok {
            return Ok(host.to_string());
        }
        return Err(LustreError::Source(format!("{} is not a NID such as 172.31.5.6@tcp", Shown(host))));
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(format!("{ip}@tcp"));
    }
    if !is_host_name(host) {
        return Err(LustreError::Source(format!("{host_shown} is not a host name", host_shown = Shown(host))));
    }
    resolve(host)
        .map(|ip| format!("{ip}@tcp"))
        .map_err(|e| LustreError::Resolve { host: host.to_string(), reason: e.to_string() })
}

/// Builds `nid[,nid…][:nid[,nid…]…]:/fsname[/subdir]` from failover groups of hosts (each
/// group: the addresses of one server).
pub fn source(
    servers: &[Vec<String>],
    fsname: &str,
    subdir: Option<&str>,
    resolve: &dyn Fn(&str) -> std::io::Result<Ipv4Addr>,
) -> Result<String, LustreError> {
    if servers.is_empty() || servers.iter().any(Vec::is_empty) {
        return Err(LustreError::Source("at least one server address is required".into()));
    }
    if !is_mount_name(fsname) {
        return Err(LustreError::Source(format!(
            "{fsname_shown} is not a mount name (1-8 of A-Z a-z 0-9 _ -)",
            fsname_shown = Shown(fsname)
        )));
    }
    let mut groups = Vec::with_capacity(servers.len());
    for server in servers {
        let nids = server.iter().map(|h| nid(h, resolve)).collect::<Result<Vec<_>, _>>()?;
        groups.push(nids.join(","));
    }
    let mut out = format!("{}:/{fsname}", groups.join(":"));
    if let Some(sub) = subdir.filter(|s| !s.is_empty()) {
        // The source ends the mount data (after device=): no separators may hide in it.
        crate::mount::paths::check_subdirectory(sub.trim_start_matches('/')).map_err(LustreError::Source)?;
        if sub.contains([',', ':', ' ']) {
            return Err(LustreError::Source(format!("subdirectory {} must not contain , : or spaces", Shown(sub))));
        }
        out.push('/');
        out.push_str(sub.trim_start_matches('/'));
    }
    Ok(out)
}

/// Parses a host list in the source grammar (`a,b:c`) into failover groups.
pub fn parse_servers(hosts: &str) -> Vec<Vec<String>> {
    hosts.split(':').map(|g| g.split(',').map(str::to_string).collect()).collect()
}

/// The real resolver: `getaddrinfo`, first IPv4 address.
pub fn resolve_ipv4(host: &str) -> std::io::Result<Ipv4Addr> {
    use std::net::ToSocketAddrs;
    (host, 0)
        .to_socket_addrs()?
        .find_map(|a| match a.ip() {
            std::net::IpAddr::V4(v4) => Some(v4),
            _ => None,
        })
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no IPv4 address"))
}

/// The fsname part of a Lustre source (`…:/fsname[/subdir]` → `fsname`).
pub fn fsname_of(source: &str) -> Option<&str> {
    let (_, path) = source.split_once(":/")?;
    path.split('/').next().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(host: &str) -> std::io::Result<Ipv4Addr> {
        match host {
            "fs-1.fsx.us-east-1.amazonaws.com" => Ok(Ipv4Addr::new(172, 31, 5, 6)),
            "mds2" => Ok(Ipv4Addr::new(10, 0, 0, 2)),
            "mds3" => Ok(Ipv4Addr::new(10, 0, 0, 3)),
            _ => Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no such host")),
        }
    }

    fn opts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// A "NID" with an option smuggled after it used to be passed through as it was.
    #[test]
    fn options_split_into_the_file_systems_and_the_binds() {
        let o = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (shared, flags) = split_per_mount(&o(&["flock", "ro", "nosuid", "nodev", "sync", "noatime"])).unwrap();
        assert_eq!(shared, o(&["flock", "sync"]));
        assert_eq!(flags, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOATIME);
        // No atime option: strictatime, as for a mount of its own.
        let (shared, flags) = split_per_mount(&o(&["flock", "lazytime"])).unwrap();
        assert_eq!(shared, o(&["flock", "lazytime"]));
        assert_eq!(flags, MsFlags::MS_STRICTATIME);
        assert!(split_per_mount(&o(&["device=x"])).is_err());
    }

    #[test]
    fn only_real_nids_pass_through() {
        let ok = source(&[vec!["10.0.0.1@o2ib1".into()]], "fsx", None, &fake).unwrap();
        assert_eq!(ok, "10.0.0.1@o2ib1:/fsx");
        for bad in ["1.2.3.4@tcp,device=/dev/sda", "host@tcp", "1.2.3.4@", "1.2.3.4@TCP x"] {
            assert!(matches!(source(&[vec![bad.into()]], "fsx", None, &fake), Err(LustreError::Source(_))), "{bad}");
        }
        assert!(source(&[vec!["10.0.0.1".into()]], "fsx", Some("a,flock"), &fake).is_err());
        assert!(source(&[vec!["10.0.0.1".into()]], "fsx", Some("../x"), &fake).is_err());
        assert_eq!(
            source(&[vec!["10.0.0.1".into()]], "fsx", Some("team/a"), &fake).unwrap(),
            "10.0.0.1@tcp:/fsx/team/a"
        );
    }

    #[test]
    fn single_server_source() {
        let s = source(&[vec!["fs-1.fsx.us-east-1.amazonaws.com".into()]], "abcdefgh", None, &fake).unwrap();
        assert_eq!(s, "172.31.5.6@tcp:/abcdefgh");
        assert_eq!(fsname_of(&s), Some("abcdefgh"));
    }

    #[test]
    fn multiple_nids_and_failover() {
        let servers = parse_servers("fs-1.fsx.us-east-1.amazonaws.com,192.168.1.1:mds2,mds3:10.1.1.1@o2ib");
        let s = source(&servers, "fsx", Some("/team/a"), &fake).unwrap();
        assert_eq!(s, "172.31.5.6@tcp,192.168.1.1@tcp:10.0.0.2@tcp,10.0.0.3@tcp:10.1.1.1@o2ib:/fsx/team/a");
        assert_eq!(fsname_of(&s), Some("fsx"));
    }

    #[test]
    fn unresolvable_host_is_a_clear_error() {
        let e = source(&[vec!["nowhere.example".into()]], "fsx", None, &fake).unwrap_err();
        assert!(matches!(e, LustreError::Resolve { ref host, .. } if host == "nowhere.example"), "{e}");
        assert!(source(&[vec!["bad host".into()]], "fsx", None, &fake).is_err());
        assert!(source(&[vec!["mds2".into()]], "toolongname", None, &fake).is_err());
    }

    #[test]
    fn fsx_default_options() {
        let (flags, data) = flags_and_data(&opts(DEFAULT_OPTIONS), "172.31.5.6@tcp:/abcdefgh").unwrap();
        assert_eq!(flags, MsFlags::MS_RELATIME);
        assert_eq!(data, "flock,device=172.31.5.6@tcp:/abcdefgh");
    }

    #[test]
    fn strictatime_unless_relatime_or_noatime() {
        let (flags, data) = flags_and_data(&opts(&["ro", "nosuid", "lazystatfs"]), "s@tcp:/f").unwrap();
        assert_eq!(flags, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(data, "lazystatfs,device=s@tcp:/f");
        let (flags, _) = flags_and_data(&opts(&["noatime"]), "s@tcp:/f").unwrap();
        assert_eq!(flags, MsFlags::MS_NOATIME);
        let (flags, _) = flags_and_data(&opts(&["ro", "rw"]), "s@tcp:/f").unwrap();
        assert_eq!(flags, MsFlags::MS_STRICTATIME);
    }

    #[test]
    fn exact_match_trap() {
        // `nouser_xattr` must not be taken for a flag (e.g. by a prefix match on "nouser"
        // or "user"): it is a Lustre option and goes into the data.
        let (flags, data) = flags_and_data(&opts(&["nouser_xattr", "relatime"]), "s@tcp:/f").unwrap();
        assert_eq!(flags, MsFlags::MS_RELATIME);
        assert_eq!(data, "nouser_xattr,device=s@tcp:/f");
        let (flags, data) = flags_and_data(&opts(&["user_xattr", "noexec"]), "s@tcp:/f").unwrap();
        assert_eq!(flags, MsFlags::MS_NOEXEC | MsFlags::MS_STRICTATIME);
        assert_eq!(data, "user_xattr,device=s@tcp:/f");
    }

    #[test]
    fn dropped_options_vanish_and_device_is_last() {
        let (_, data) =
            flags_and_data(&opts(&["_netdev", "defaults", "flock", "flock", "user_xattr"]), "s@tcp:/f").unwrap();
        assert_eq!(data, "flock,user_xattr,device=s@tcp:/f");
        assert!(data.ends_with("device=s@tcp:/f"));
    }

    #[test]
    fn allow_list() {
        for bad in [
            "device=1.2.3.4@tcp:/x",
            "mgsname=x",
            "relatime,flock",
            "flock\nro",
            "bogus",
            "remount",
            "bind",
            "context=x",
        ] {
            assert!(check_options(&opts(&[bad])).is_err(), "{bad} was accepted");
        }
        check_options(&opts(&["ro", "flock", "localflock", "noflock", "lazystatfs", "noatime", "_netdev"])).unwrap();
    }

    #[test]
    fn call_description() {
        let d = describe_call(
            "1.2.3.4@tcp:/fsx",
            std::path::Path::new("/mnt"),
            "lustre",
            MsFlags::MS_RELATIME | MsFlags::MS_RDONLY,
            "flock,device=1.2.3.4@tcp:/fsx",
        );
        assert_eq!(
            d,
            r#"mount("1.2.3.4@tcp:/fsx", "/mnt", "lustre", MS_RDONLY|MS_RELATIME, "flock,device=1.2.3.4@tcp:/fsx")"#
        );
        assert_eq!(flag_names(MsFlags::empty()), "0");
    }

    #[test]
    fn names() {
        assert!(is_host_name("fs-0123.fsx.us-east-1.amazonaws.com"));
        assert!(is_host_name("10.0.0.1"));
        assert!(!is_host_name("-bad.example"));
        assert!(!is_host_name("a..b"));
        assert!(!is_host_name("a b"));
        assert!(is_mount_name("abcd_1-2"));
        assert!(!is_mount_name("abcdefghi"));
        assert!(!is_mount_name(""));
        assert!(!is_mount_name("a/b"));
    }

    #[test]
    fn real_resolver_handles_literals_and_localhost() {
        assert_eq!(resolve_ipv4("127.0.0.1").unwrap(), Ipv4Addr::LOCALHOST);
        assert_eq!(resolve_ipv4("localhost").unwrap(), Ipv4Addr::LOCALHOST);
    }
}
