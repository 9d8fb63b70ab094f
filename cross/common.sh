# Shared by cross/build and cross/smoke (sourced, not run): target names and cache layout.
# shellcheck shell=bash
# The variables are for the scripts that source this file.
# shellcheck disable=SC2034

die() {
  echo "error: $*" >&2
  exit 1
}

# Sets TRIPLE (Rust), ARCH (Debian), GNU (gcc/binutils prefix), QEMU for TARGET.
herd_cross_target() {
  case "${1:-}" in
    aarch64 | arm64 | aarch64-unknown-linux-gnu)
      TARGET=aarch64 TRIPLE=aarch64-unknown-linux-gnu ARCH=arm64 GNU=aarch64-linux-gnu
      QEMU=qemu-aarch64-static
      ;;
    armv7 | armhf | armv7-unknown-linux-gnueabihf)
      TARGET=armv7 TRIPLE=armv7-unknown-linux-gnueabihf ARCH=armhf GNU=arm-linux-gnueabihf
      QEMU=qemu-arm-static
      ;;
    *)
      echo "usage: ${0##*/} aarch64|armv7" >&2
      exit 2
      ;;
  esac
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${HERD_CROSS_CACHE:-/var/cache/herd-cross}
TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/herd-target}
# The Debian sid chroot that builds (rustc, cargo, cross gcc) ...
ROOT=$CACHE/chroot/sid
# ... and what it sees under /cache: cargo home, bookworm sysroots, source copy, patched crates.
DATA=$CACHE/data
# glibc of the boards (Debian bookworm, Raspberry Pi OS): the newest symbol version allowed.
MAX_GLIBC=2.36

sysroot_of() { echo "$DATA/sysroot/bookworm-$1"; }
