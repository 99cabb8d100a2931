#!/bin/sh
# Builds vfio-bind's static musl binary with each size option of docs/performance.md and
# prints its size. Builds go to target/size-exp, so the normal target/ is left alone.
# The nightly rows need `rustup +nightly component add rust-src` and
# `rustup +nightly target add x86_64-unknown-linux-musl`; they are skipped without them.
#
#   sh xtask/bench/size-experiments.sh [--empty-main]
#
# --empty-main measures a `fn main() {}` package with the same profile instead, to tell
# what std itself costs from what vfio-bind adds.
set -eu

cd "$(dirname "$0")/../.."
root=$(pwd)
target=x86_64-unknown-linux-musl
out=$root/target/size-exp
manifest=$root/Cargo.toml
bin=vfio-bind

if [ "${1:-}" = --empty-main ]; then
    empty=$out/empty-main
    mkdir -p "$empty/src"
    cat > "$empty/Cargo.toml" <<'EOF'
[package]
name = "empty-main"
version = "0.0.0"
edition = "2021"

[workspace]

[profile.release]
opt-level = "z"
lto = true
codegen-units = 1
panic = "abort"
strip = true
EOF
    echo 'fn main() {}' > "$empty/src/main.rs"
    manifest=$empty/Cargo.toml
    bin="empty-main"
fi

static='-C relocation-model=static'
linker='-C link-arg=-Wl,-z,norelro -C link-arg=-Wl,-z,noseparate-code -C link-arg=-Wl,--build-id=none'
# The same without giving up RELRO.
linker_relro='-C link-arg=-Wl,-z,noseparate-code -C link-arg=-Wl,--build-id=none'
no_unwind='-C force-unwind-tables=no'
# std rebuilt with the panic strategy that drops the panic machinery (formatting of panic
# messages, the panic hook, backtrace symbolization with gimli/addr2line). Since nightly
# 2025-10 it is `-C panic=immediate-abort`; before, `-Z build-std-features=panic_immediate_abort`.
nightly_std='-Z build-std=std,panic_abort'
immediate_abort='-Z unstable-options -C panic=immediate-abort'

# One experiment: a name, a toolchain, extra profile settings (env), RUSTFLAGS, cargo -Z flags.
measure() {
    name=$1 toolchain=$2 profile=$3 flags=$4 zflags=$5
    dir=$out/$(printf '%s' "$name" | tr -c 'a-zA-Z0-9' '-')
    # shellcheck disable=SC2086 # the flag and profile lists are meant to be split
    if env $profile RUSTFLAGS="$flags" CARGO_TARGET_DIR="$dir" \
        cargo "+$toolchain" build --quiet --release --manifest-path "$manifest" \
        --bin "$bin" --target "$target" $zflags >"$dir.log" 2>&1; then
        size=$(wc -c <"$dir/$target/release/$bin")
        awk -v name="$name" -v size="$size" \
            'BEGIN { printf "%-66s %7d bytes %6.1f KiB\n", name, size, size / 1024 }'
    else
        printf '%-66s failed (see %s.log)\n' "$name" "$dir"
    fi
}

mkdir -p "$out"
echo "$bin at $(git rev-parse --short HEAD), $target"
measure "stable: profile as is (z, LTO, 1 CGU, abort, strip)" stable "" "" ""
measure "stable: + relocation-model=static (non-PIE)" stable "" "$static" ""
measure "stable: + static + linker flags" stable "" "$static $linker" ""
measure "stable: + static + linker flags but RELRO kept" stable "" "$static $linker_relro" ""
measure "stable: + static + linker + force-unwind-tables=no" stable "" "$static $linker $no_unwind" ""
measure "stable: opt-level=s + static + linker" stable "CARGO_PROFILE_RELEASE_OPT_LEVEL=s" "$static $linker" ""
if ! rustup +nightly component list --installed 2>/dev/null | grep -q '^rust-src'; then
    echo "nightly rows skipped: rustup +nightly component add rust-src"
    exit 0
fi
measure "nightly: profile as is" nightly "" "" ""
measure "nightly: build-std (panic=abort)" nightly "" "" "$nightly_std"
measure "nightly: build-std + panic=immediate-abort" nightly "" "$immediate_abort" "$nightly_std"
measure "nightly: build-std + immediate-abort + static" nightly "" \
    "$immediate_abort $static" "$nightly_std"
measure "nightly: build-std + immediate-abort + static + linker" nightly "" \
    "$immediate_abort $static $linker" "$nightly_std"
measure "nightly: the same + location-detail=none + fmt-debug=none" nightly "" \
    "$immediate_abort $static $linker -Z location-detail=none -Z fmt-debug=none" "$nightly_std"
