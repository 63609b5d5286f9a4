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

use std::time::Duration;

use crate::DRIVER_NAME;
use crate::error::Chain;
use crate::kube::{KubeClient, KubeError};

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
