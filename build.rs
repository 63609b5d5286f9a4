//! Compiles the verbatim protos with protox (pure Rust, no system protoc) and generates the
//! tonic server and client stubs:
//! - `proto/csi.proto`: the CSI spec v1.12.0 (Go module
//!   `github.com/container-storage-interface/spec@v1.12.0`);
//! - `proto/kubelet/pluginregistration/v1/api.proto`: the kubelet's plugin registration API
//!   (Go module `k8s.io/kubelet@v0.37.2`, `pkg/apis/pluginregistration/v1`), which the node
//!   plugin serves when it registers itself with the kubelet (`--kubelet-registration-path`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/csi.proto");
    println!("cargo:rerun-if-changed=proto/kubelet/pluginregistration/v1/api.proto");
    let fds = protox::compile(["csi.proto", "kubelet/pluginregistration/v1/api.proto"], ["proto"])?;
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(fds)?;
    Ok(())
}
