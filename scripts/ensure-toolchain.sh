#!/usr/bin/env bash
# rust-toolchain.toml pins the toolchain that is on the machine (1.95.0). On a machine
# whose rustup knows it only as "stable", register that same toolchain under the pinned
# name instead of letting rustup try to download it (the registries here do not serve it).
set -euo pipefail
want=$(sed -n 's/^channel = "\(.*\)"/\1/p' "$(dirname "$0")/../rust-toolchain.toml")
command -v rustup >/dev/null 2>&1 || exit 0
if rustup toolchain list | grep -q "^${want}-"; then exit 0; fi
have=$(rustc +stable --version | awk '{print $2}')
if [ "$have" != "$want" ]; then
  echo "rust-toolchain.toml pins $want but the machine's stable toolchain is $have: update rust-toolchain.toml" >&2
  exit 1
fi
host=$(rustc +stable -vV | sed -n 's/^host: //p')
rustup toolchain link "${want}-${host}" "$(rustc +stable --print sysroot)"
echo "linked the machine's stable toolchain as ${want}-${host}"
