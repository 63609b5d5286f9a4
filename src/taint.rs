//! The `fsx.csi.aws.com/agent-not-ready` taint (`--remove-not-ready-taint`).
//!
//! Node groups created with this taint keep pods that need FSx off a new node until the
//! plugin can mount there. The plugin removes it from its own Node, but only once the kubelet
//! has registered the plugin (the node's CSINode lists `fsx.csi.aws.com`): before that, a pod
//! scheduled to the node would fail to mount. The Go driver removes it as soon as its process
//! starts, which leaves that window open.
//!
//! It runs in the background, after the CSI socket is up, and never delays it: it reads the
//! CSINode, then watches it until the driver is listed (no polling), then patches only that
//! taint (any effect), keeping the others as they are and retrying on conflicts and API errors
//! with a capped back-off. Errors are logged once per change, not per retry.
//!
//! A node without the Lustre client kernel module ([`crate::mount::client`]) keeps the taint:
//! pods that need FSx would otherwise land there and fail one by one with `ENODEV`. The plugin
//! says why once (a log line, a Warning event on the Node, the `fsx_csi_node_lustre_client`
//! gauge), checks again every [`RECHECK`] (installing the module needs no plugin restart), and
//! goes on as above once the module is there. A node where it cannot be told is not held.

use std::time::Duration;

use crate::DRIVER_NAME;
use crate::error::Chain;
use crate::kube::{KubeClient, KubeError};
use crate::mount::client::ClientModule;

/// How often a node without the Lustre client is checked again.
pub const RECHECK: Duration = Duration::from_secs(60);

/// The reason of the Node event a node without the Lustre client gets.
pub const NO_CLIENT_REASON: &str = "FsxLustreClientMissing";

/// Whether the taint may come off as far as the Lustre client goes: everything but a module
/// index that shows no Lustre module.
pub fn client_allows(found: &ClientModule) -> bool {
    !matches!(found, ClientModule::Missing { .. })
}

/// Holds until `detect` finds the Lustre client (or cannot tell), checking every `every`;
/// the first time it is missing, posts a Warning event on the node (a failure to post is
/// logged and does not change anything else).
pub async fn wait_for_client(client: &KubeClient, node: &str, detect: impl Fn() -> ClientModule, every: Duration) {
    let mut told = false;
    loop {
        let found = detect();
        crate::metrics::get().lustre_client(found.as_str());
        if client_allows(&found) {
            if told {
                tracing::info!(node, state = found.as_str(), "the Lustre client kernel module is here now");
            }
            return;
        }
        if !told {
            told = true;
            tracing::warn!(node, taint = NOT_READY_TAINT, recheck = ?every, "keeping the taint: this node cannot mount FSx for Lustre until the Lustre client kernel module is installed");
            let message = format!(
                "The Lustre client kernel module is not installed for this node's kernel ({}): FSx for Lustre volumes cannot be mounted here, so the {NOT_READY_TAINT} taint stays. Use a node image with the Lustre client (EKS-optimized Amazon Linux 2023: dnf install -y lustre-client; Bottlerocket includes it); the plugin checks again every {}s.",
                match &found {
                    ClientModule::Missing { release } => release.as_str(),
                    _ => "?",
                },
                every.as_secs()
            );
            if let Err(e) = client.warn_node(node, NO_CLIENT_REASON, &message).await {
                tracing::warn!(error = %Chain(&e), "cannot post the Node event (the log line above says the same)");
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// The taint this driver's node groups may carry until the plugin is ready.
pub const NOT_READY_TAINT: &str = "fsx.csi.aws.com/agent-not-ready";

/// The first and the longest wait between attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

/// Logs an error once until a different one (or success) happens.
#[derive(Default)]
struct OnceLog(Option<String>);

impl OnceLog {
    fn error(&mut self, what: &str, e: &KubeError) {
        let text = Chain(e).to_string();
        if self.0.as_deref() != Some(&text) {
            tracing::warn!(error = %text, "{what}; retrying with back-off");
            self.0 = Some(text);
        }
    }
}

fn next(backoff: Duration) -> Duration {
    (backoff * 2).min(BACKOFF.1)
}

/// Waits until the kubelet has registered this plugin on node `node`, then removes the taint.
/// Returns how many taints were removed (0 if the node had none). Runs until done.
pub async fn remove_when_registered(client: &KubeClient, node: &str) -> usize {
    let mut log = OnceLog::default();
    let mut backoff = BACKOFF.0;
    let mut told = false;
    loop {
        let registered = match client.csi_node_registered(node, DRIVER_NAME).await {
            Ok(true) => break,
            Ok(false) if !told => {
                tracing::info!(
                    node,
                    taint = NOT_READY_TAINT,
                    "waiting for the kubelet to register the plugin before removing the taint"
                );
                told = true;
                client.csi_node_lists(node, DRIVER_NAME).await
            }
            Ok(false) => client.csi_node_lists(node, DRIVER_NAME).await,
            Err(e) => Err(e),
        };
        match registered {
            Ok(true) => break,
            Ok(false) => backoff = BACKOFF.0,
            Err(e) => {
                log.error("cannot read this node's CSINode", &e);
                tokio::time::sleep(backoff).await;
                backoff = next(backoff);
            }
        }
    }
    let mut log = OnceLog::default();
    let mut backoff = BACKOFF.0;
    loop {
        match client.remove_taint(node, NOT_READY_TAINT).await {
            Ok(0) => {
                tracing::info!(
                    node,
                    taint = NOT_READY_TAINT,
                    "the kubelet registered the plugin; the node has no such taint"
                );
                return 0;
            }
            Ok(n) => {
                tracing::info!(
                    node,
                    taint = NOT_READY_TAINT,
                    removed = n,
                    "the kubelet registered the plugin; taint removed"
                );
                return n;
            }
            // The node changed between the read and the patch: read it again after a pause.
            Err(e) if e.is_conflict() => tracing::debug!(error = %Chain(&e), "the node changed; patching again"),
            Err(e) => log.error("cannot remove the not-ready taint", &e),
        }
        tokio::time::sleep(backoff).await;
        backoff = next(backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_node_known_to_lack_the_module_is_held() {
        assert!(client_allows(&ClientModule::Loaded));
        assert!(client_allows(&ClientModule::Installed));
        assert!(client_allows(&ClientModule::Unknown { why: "no /lib/modules".into() }));
        assert!(!client_allows(&ClientModule::Missing { release: "6.1.0".into() }));
    }
}
