//! A Container Storage Interface driver for Amazon FSx for Lustre.
//!
//! One binary, `fsx-csi-driver`, runs as the controller (beside the CSI sidecars, talking to
//! the FSx API) or as the node plugin (on every node, mounting Lustre with `mount(2)`), or both.
//! It is a drop-in for `kubernetes-sigs/aws-fsx-csi-driver`: same driver name, StorageClass
//! keys, volume context keys and `CSIVolumeName` tag.
//!
//! # Layout
//!
//! The tree follows the path of a request, from the CSI socket inwards to the two real
//! boundaries (the FSx API and the kernel's mount table):
//!
//! - [`cli`]: the command line (`--mode`, `--endpoint`, ...), parsed with clap.
//! - [`server`]: binds the unix socket (0600; a live instance's socket is never taken over,
//!   and only this process's own socket is removed at exit) and serves the CSI services with
//!   graceful shutdown, every resource a peer can make it hold bounded ([`server::Limits`]):
//!   `server::connections` caps connections (half-open and idle ones make room) and backs
//!   off when out of descriptors; `server::authority` lets non-Go gRPC clients in (any
//!   `:authority`, patched in place by `server::hpack`, which also bounds each header
//!   block) and times the handshake; `server::admission` caps calls in progress and
//!   unfinished request bodies.
//! - [`csi`]: the CSI surface, one file per service. Handlers validate the request, open a
//!   span with `volume.id` / `volume.name` / `target.path`, call into the layers below, and
//!   choose the gRPC code for every error in one place per RPC family; [`csi::observe`] logs
//!   every non-OK status once, at a level chosen with the code.
//!   - [`csi::identity`]: plugin name, capabilities and readiness.
//!   - [`csi::controller`]: CreateVolume (new or restored), DeleteVolume, expansion,
//!     ControllerModifyVolume, snapshots (Create/Delete/ListSnapshots), ControllerGetVolume,
//!     ListVolumes, ...
//!   - [`csi::node`]: NodeStage/Publish/Unpublish/Unstage, stats and node info (request
//!     checks and per-volume guards; the mount work is `mount::ops`).
//!   - [`csi::context`]: the volume context keys (`dnsname`, `mountname`, `subdirectory`)
//!     the controller writes and the node reads, shared with the Go driver.
//! - [`provision`]: the controller's logic, independent of gRPC.
//!   - [`provision::params`]: StorageClass parameters parsed once into one typed struct;
//!     every key is described once in `provision::params::keys` (values, default, which
//!     deployment types take it, mutability, how it is read and compared; its name is a
//!     constant there), and parsing, the comparison with an existing file system and the
//!     README's table derive from it; `provision::params::mutable` reads
//!     VolumeAttributesClass parameters from the same table and checks them against the file
//!     system they would change; `provision::params::associations` reads the
//!     `dataRepositoryAssociations` JSON list. A key's FSx side is one entry of
//!     `fsx::settings`.
//!   - `provision::capacity`: valid FSx for Lustre sizes per deployment and storage type.
//!   - `provision::token`: deterministic `ClientRequestToken`s.
//!   - `provision::index`: one generic in-memory index of named FSx resources: file systems
//!     by volume name, backups by snapshot name (one listing at start, refreshed every
//!     `--resync-interval`).
//!   - `provision::poller`: one background poller that describes everything in flight (file
//!     systems being created, grown or modified, S3 associations being created, backups being
//!     taken) in batches of 50 and wakes the calls waiting on them;
//!     [`provision::cadence`] says when each is described next: rarely early, every second
//!     once due (from what this controller saw such work take), within a budget of one call
//!     per 15 s of work shared by a batch (or a fixed `--poll-interval`).
//!   - `provision::progress`: the events on the claim while FSx works (one follower task per
//!     resource reading the poller's observations: progress at most once a minute, the end).
//!   - [`provision::ProvisionError`] (`provision/error.rs`): why a call did not succeed, a
//!     typed reason for every refusal.
//!   - [`provision::Provisioner`]: create (or restore from a backup, with its S3
//!     associations, up to 8), expand, modify (`provision/modify.rs`), delete (with the final
//!     backup recorded at creation) and get; snapshots as
//!     backups (`provision/snapshot.rs`); exactly one file system per volume name and one
//!     backup per snapshot name.
//! - [`subdir`]: subdirectory volumes (`provisioningMode: subdirectory`): a directory per
//!   claim on an existing file system, its size a Lustre project quota; the StorageClass
//!   keys, the path pattern, the volume id, the registry the driver keeps on the file system
//!   (project ids allocated there, so controllers sharing it never collide) and the quota
//!   ioctls (the crate's one `unsafe` exception).
//! - [`fsx`]: the FSx boundary: a domain trait ([`fsx::Fsx`]), domain types and errors, and
//!   [`fsx::aws::AwsFsx`], its implementation on `aws-sdk-fsx`; `fsx/settings.rs` declares
//!   each Lustre setting once ([`fsx::LustreSettings`]: its field, how it is read from a
//!   described file system and sent in a create or an update); unit tests use an in-memory
//!   implementation on tokio's clock (`fsx::memory`), so the core is tested in paused time.
//! - [`topology`]: zone-aware placement: a StorageClass's subnets (`subnetIds`) with their
//!   zones and VPC learned once ([`topology::SubnetZones`]) and checked, the subnet for the
//!   zone the scheduler chose, and the zone a volume and a node report;
//!   [`ec2`] learns the zones: `DescribeSubnets` alone, on a narrow signed Query client (not
//!   `aws-sdk-ec2`, for build time and size).
//! - [`mount`]: the mount boundary: Lustre source / flag / data building as pure functions,
//!   `/proc/self/mountinfo` parsing, [`mount::paths`] (request paths resolved below the
//!   kubelet directory without following symlinks), the [`mount::Mounter`] trait with the
//!   syscall mounter, the bounded worker that keeps a hung Lustre server from freezing the
//!   plugin (one call per path and lane, a cap on blocked threads), and `mount::ops`, the
//!   operations built on them (stage, bind, unmount with escalation, health; a read-only
//!   bind is mounted again so that the host's copy, which the runtime gives the pod, is
//!   read-only too: a remount does not propagate);
//!   [`mount::client`] tells at start whether the node has the Lustre client module, without
//!   side effects (`/proc/filesystems`, the kernel's module index); `mount::stand_in`
//!   (test builds only, feature `lustre-stand-in`) stands in for Lustre in the node tier.
//! - [`drain`]: the node plugin's preStop hook (`fsx-csi-driver pre-stop`): on a node being
//!   drained, wait (bounded) until the kubelet has unmounted every volume of this driver, woken
//!   by the mount table's change notifications.
//! - [`taint`]: `--remove-not-ready-taint`: the node's `fsx.csi.aws.com/agent-not-ready`
//!   taint comes off once the kubelet has registered the plugin (its CSINode lists the driver)
//!   and the node has the Lustre client module (else a Warning event on the Node, checked again
//!   every minute).
//! - [`registration`]: `--kubelet-registration-path`: the node plugin registers itself with
//!   the kubelet (the kubelet's `pluginregistration/v1` API on a socket in its
//!   `plugins_registry`), in place of the node-driver-registrar sidecar, which stays the
//!   manifests' default.
//! - [`events`]: the controller's events on claims (creation, progress once a minute, S3
//!   links, FAILED, growth) and VolumeSnapshots, queued without blocking and aggregated as
//!   the event recorder does (one series per object and reason, its count patched).
//! - [`kube`]: the Kubernetes API for both (kube-rs, the pod's service account).
//! - [`metrics`]: Prometheus metrics behind `--metrics-address`, recorded at the FSx SDK
//!   (every HTTP attempt), the gRPC server (every CSI call), the provisioner and the mounts,
//!   served on a thread of their own with a cap on connections.
//! - `guard`: per-key guards (typed keys: volume name, volume id, snapshot name, snapshot
//!   id, path) that answer `Aborted` to concurrent calls, for both services.
//! - [`error`]: what the boundaries' errors share: [`error::Cause`] keeps an underlying
//!   error (the SDK's, kube-rs's) as a source, [`error::Chain`] shows an error with its
//!   sources in messages and logs.
//! - `text`: outside text shown in messages and logs: escaped and cut.
//! - [`metadata`]: the EC2 instance metadata service (the node id when none is given).
//! - [`logging`]: `--log-format text|json` tracing setup; every line is scrubbed of
//!   credentials, every field escaped and cut, every line bounded.
//!
//! The FSx emulator used by tests, the demo and the benchmarks is a separate crate in
//! `tests/fsx-emulator`, and the test-only programs (demo client, csi-sanity harness,
//! benchmarks, chaos test, abuse tier) are in `tests/tools`; the fuzz targets are
//! `tests/fuzz.rs`; what they drive of the internals is exported on purpose in [`testing`].
//! Modules the rest of the crate only uses are private, so `pub` marks the surface. The
//! shipped binary has no fake mode.

pub mod cli;
pub mod csi;
pub mod drain;
pub mod ec2;
pub mod error;
pub mod events;
pub mod fsx;
mod guard;
pub mod kube;
pub mod logging;
pub mod metadata;
pub mod metrics;
pub mod mount;
pub mod provision;
pub mod registration;
pub mod server;
pub mod subdir;
pub mod taint;
pub(crate) mod text;
pub mod topology;

/// Internals that the fuzz targets (`tests/fuzz.rs`) and the attack tools (`csi-abuse`)
/// drive directly, exported here on purpose and nowhere else: not part of the driver's API.
#[doc(hidden)]
pub mod testing {
    pub use crate::provision::token::client_request_token;
    pub use crate::server::authority::rewrite_stream;
    pub use crate::server::hpack::{MAX_HEADER_LIST, Patcher, static_entry, write_integer};
}

/// The kubelet's plugin registration API (`pluginregistration.Registration`,
/// `proto/kubelet/pluginregistration/v1/api.proto`), served by the node plugin when it
/// registers itself ([`registration`]).
#[allow(clippy::all, missing_docs)]
pub mod pluginregistration {
    tonic::include_proto!("pluginregistration");
}

/// Generated CSI v1.12.0 types and service stubs (`proto/csi.proto`).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("csi.v1");
}

/// The CSI driver name, shared with the Go driver so clusters can switch without changes.
pub const DRIVER_NAME: &str = "fsx.csi.aws.com";

/// This crate's version, reported by `GetPluginInfo` and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
