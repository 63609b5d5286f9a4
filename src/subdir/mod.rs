//! Subdirectory volumes (`provisioningMode: subdirectory`): many claims on one existing file
//! system, a directory per claim, its size a Lustre project quota.
//!
//! - [`params`]: the subdirectory StorageClass keys, parsed and checked before anything
//!   happens;
//! - [`pattern`]: `basePath` and `subPathPattern`, expanded so that the directory is always
//!   strictly below `basePath`, whatever the claim is called;
//! - [`id`]: the volume id, `fs-…/subdir/<project id>`: short, and enough to find everything
//!   else after any restart;
//! - [`registry`]: the driver's records on the file system itself (`.fsx-csi-driver/`):
//!   project ids allocated with `link(2)` so that two controllers sharing a file system never
//!   collide, directories made and removed without following a symlink;
//! - [`service`]: the controller's create, delete and expand on top of them, the file system
//!   described once and mounted once ([`service::Roots`]; [`roots`] mounts Lustre);
//! - [`quota`]: the project id and project quota ioctls, behind a seam the tests stand in
//!   for (the crate's one `unsafe` exception, explained there);
//! - `stand_in` (test builds only, feature `lustre-stand-in`): project ids and quotas in
//!   extended attributes, for the tiers' stood-in file systems.

pub mod id;
pub mod params;
pub mod pattern;
pub mod quota;
pub mod registry;
pub mod roots;
pub mod service;
#[cfg(any(test, feature = "lustre-stand-in"))]
pub mod stand_in;
