#!/usr/bin/env bash
# Compiles the Rego in policy/ to policy/policy.wasm with the real OPA compiler at a pinned version,
# byte-for-byte reproducibly (same sources + same OPA version => same bytes).
#
#   scripts/build-policy.sh            build and write policy/policy.wasm
#   scripts/build-policy.sh --check    rebuild into a temp dir; fail if it differs from the committed file
#   scripts/build-policy.sh --test     opa check --strict, opa fmt --list, opa test policy/ -v
#   scripts/build-policy.sh --opa-path print the path of the pinned opa binary (building it if needed)
#
# OPA comes from the Go module proxy (checksums verified against sum.golang.org by the go tool):
# ~/go/bin/opa is used when `opa version` reports the pinned version, else the pinned module is
# built with `go install` into a cache directory. Set OPA_BIN to try another binary (its version
# is checked the same way).
set -euo pipefail

OPA_VERSION="1.4.2"
OPA_MODULE="github.com/open-policy-agent/opa@v${OPA_VERSION}"
ENTRYPOINT="portcullis/authz/decision"

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

die() { echo "build-policy: $*" >&2; exit 1; }

opa_version_of() {
  "$1" version 2>/dev/null | awk -F': ' '$1 == "Version" { print $2; exit }'
}

resolve_opa() {
  local candidate
  for candidate in "${OPA_BIN:-}" "$HOME/go/bin/opa"; do
    [[ -n "$candidate" && -x "$candidate" ]] || continue
    if [[ "$(opa_version_of "$candidate")" == "$OPA_VERSION" ]]; then
      echo "$candidate"
      return 0
    fi
  done
  command -v go >/dev/null 2>&1 || die "no opa $OPA_VERSION found and no Go toolchain to build $OPA_MODULE"
  local cache="${XDG_CACHE_HOME:-$HOME/.cache}/portcullis/opa-v${OPA_VERSION}"
  if [[ ! -x "$cache/opa" || "$(opa_version_of "$cache/opa")" != "$OPA_VERSION" ]]; then
    echo "build-policy: building $OPA_MODULE from the Go module proxy into $cache" >&2
    mkdir -p "$cache"
    # GOFLAGS cleared so a workspace or vendor setting cannot change what is built.
    GOFLAGS= GOBIN="$cache" go install "$OPA_MODULE" >&2 || die "go install $OPA_MODULE failed"
  fi
  [[ "$(opa_version_of "$cache/opa")" == "$OPA_VERSION" ]] || die "built opa does not report version $OPA_VERSION"
  echo "$cache/opa"
}

# The policy sources: every .rego under policy/ except tests, in a fixed order, as paths relative
# to the repository root (the compiler embeds file names in the module).
policy_sources() {
  find policy -type f -name '*.rego' ! -name '*_test.rego' -print | LC_ALL=C sort
}

# build_into DIR: writes DIR/policy.wasm.
build_into() {
  local out="$1" opa
  opa="$(resolve_opa)"
  mapfile -t sources < <(policy_sources)
  ((${#sources[@]} > 0)) || die "no .rego sources under policy/"
  "$opa" build -t wasm -e "$ENTRYPOINT" --ignore '*_test.rego' -o "$out/bundle.tar.gz" "${sources[@]}"
  tar -xzf "$out/bundle.tar.gz" -C "$out" /policy.wasm 2>/dev/null || tar -xzf "$out/bundle.tar.gz" -C "$out" policy.wasm
  [[ -s "$out/policy.wasm" ]] || die "opa build produced no policy.wasm"
  rm -f "$out/bundle.tar.gz"
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

case "${1:-}" in
  "")
    build_into "$tmp"
    install -m 0644 "$tmp/policy.wasm" policy/policy.wasm
    echo "policy/policy.wasm sha256:$(sha256sum policy/policy.wasm | cut -d' ' -f1)"
    ;;
  --check)
    [[ -f policy/policy.wasm ]] || die "policy/policy.wasm is missing; run scripts/build-policy.sh"
    build_into "$tmp"
    if ! cmp -s "$tmp/policy.wasm" policy/policy.wasm; then
      echo "build-policy: policy/policy.wasm differs from a rebuild of policy/*.rego" >&2
      echo "  committed sha256:$(sha256sum policy/policy.wasm | cut -d' ' -f1)" >&2
      echo "  rebuilt   sha256:$(sha256sum "$tmp/policy.wasm" | cut -d' ' -f1)" >&2
      exit 1
    fi
    echo "policy/policy.wasm is reproducible (sha256:$(sha256sum policy/policy.wasm | cut -d' ' -f1))"
    ;;
  --test)
    opa="$(resolve_opa)"
    "$opa" check --strict --ignore '*.json' policy/
    unformatted="$("$opa" fmt --list policy/)"
    [[ -z "$unformatted" ]] || die "not formatted with opa fmt: $unformatted"
    # The data schema is JSON in policy/; it is not policy data, so it is not loaded.
    "$opa" test policy/ -v --ignore '*.json'
    ;;
  --opa-path)
    resolve_opa
    ;;
  *)
    die "unknown option: $1 (use --check, --test or --opa-path)"
    ;;
esac
