#!/usr/bin/env bash
# helm, installed into bin/ at the version hack/check-deploy.sh uses.
set -euo pipefail
# shellcheck source=../tools.sh
source "$(dirname "$0")/../tools.sh"
install_go_tool helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm
exec "$(dirname "$0")/../../bin/helm" "$@"
