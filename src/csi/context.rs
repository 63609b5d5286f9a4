//! The volume context keys, shared by the controller (which writes them into a new volume)
//! and the node (which reads them to mount it), and with the Go driver: a static PV written
//! for either driver mounts with both.

/// The file system's DNS name.
pub const DNS_NAME: &str = "dnsname";
/// The file system's Lustre mount name.
pub const MOUNT_NAME: &str = "mountname";
/// Optional: a subdirectory of the file system to publish instead of its root.
pub const SUBDIRECTORY: &str = "subdirectory";
/// Written by this driver when the file system has EFA enabled (`"true"`): the node warns when
/// it stages such a volume without EFA interfaces in LNet. Optional in static PVs.
pub const EFA_ENABLED: &str = "efaEnabled";
