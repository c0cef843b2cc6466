#!/usr/bin/env bash
# tinysplit setup: system packages (cross compilers, QEMU) and the Python virtual environment.
#
#   ./setup.sh            everything a user needs (export + host server + firmware toolchains)
#   ./setup.sh --dev      the same plus the test tools
#   ./setup.sh --no-apt   skip system packages (you installed them yourself)
#
# Idempotent: a second run checks what is there and installs only what is missing.
# Runs as root, or as a user with sudo for the system packages.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${TINYSPLIT_VENV:-$here/.venv}"
extras="export,host"
do_apt=1
for arg in "$@"; do
  case "$arg" in
    --dev) extras="dev" ;;
    --no-apt) do_apt=0 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# --- system packages --------------------------------------------------------------------------
# command -> Debian package that provides it
apt_packages=(gcc-arm-none-eabi libnewlib-arm-none-eabi picolibc-arm-none-eabi
              qemu-system-arm qemu-system-misc gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf
              gcc-xtensa-lx106 binutils-xtensa-lx106 picolibc-xtensa-lx106-elf
              gcc make)
required_cmds=(arm-none-eabi-gcc qemu-system-arm qemu-system-riscv32 riscv64-unknown-elf-gcc
               xtensa-lx106-elf-gcc qemu-system-xtensa gcc)
# files no command stands for (boards/qemu-xtensa-lx106.yaml names this specs file)
required_files=(/usr/lib/xtensa-lx106-elf/picolibc.specs)

missing_cmds() {
  local c out=()
  for c in "${required_cmds[@]}"; do command -v "$c" >/dev/null 2>&1 || out+=("$c"); done
  for c in "${required_files[@]}"; do [ -e "$c" ] || out+=("$c"); done
  echo "${out[@]:-}"
}

if [ "$do_apt" = 1 ]; then
  missing="$(missing_cmds)"
  if [ -n "$missing" ]; then
    say "installing system packages (missing: $missing)"
    if [ "$(id -u)" = 0 ]; then sudo=""; 
    elif command -v sudo >/dev/null 2>&1; then sudo="sudo";
    else die "missing $missing and not root and no sudo: install these Debian packages yourself: ${apt_packages[*]} (then run ./setup.sh --no-apt)"; fi
    command -v apt-get >/dev/null 2>&1 || die "no apt-get: on a non-Debian system install the equivalents of: ${apt_packages[*]}, then run ./setup.sh --no-apt"
    $sudo apt-get update -qq || die "apt-get update failed (network or sources.list?)"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null \
      || die "apt-get install failed for: ${apt_packages[*]}"
    missing="$(missing_cmds)"
    [ -z "$missing" ] || die "still missing after apt-get install: $missing"
  else
    say "system packages present"
  fi
fi

# --- Python virtual environment ----------------------------------------------------------------
py="${PYTHON:-python3}"
command -v "$py" >/dev/null 2>&1 || die "no $py: install Python 3.11 or newer"
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || die "$py is $("$py" -V 2>&1); tinysplit needs Python 3.11 or newer (set PYTHON=...)"

if [ ! -x "$venv/bin/python" ]; then
  say "creating virtual environment $venv"
  "$py" -m venv "$venv" || die "python -m venv failed (on Debian: apt-get install python3-venv)"
fi

# Reinstall only when the dependency declaration or the chosen extras changed.
stamp="$venv/.tinysplit-setup"
want="$(cat "$here/pyproject.toml" "$here/setup.py" "$here/setup.sh" | sha256sum | cut -c1-16) $extras"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c 'import tinysplit' 2>/dev/null; then
  say "virtual environment up to date"
else
  say "installing tinysplit[$extras] into $venv (first time: a few minutes, ~3 GB)"
  "$venv/bin/python" -m pip install -q --upgrade pip "setuptools>=77" >/dev/null \
    || die "pip could not upgrade pip/setuptools in $venv (is the package registry reachable?)"
  # torch first and pinned: the CPU build; an unpinned resolve could pull a multi-GB CUDA build.
  "$venv/bin/python" -m pip install -q "torch==2.13.0" || die "pip could not install torch==2.13.0"
  "$venv/bin/python" -m pip install -q -e "$here[$extras]" || die "pip install -e .[$extras] failed (see pip's message above)"
  echo "$want" > "$stamp"
fi
say "ready: $venv/bin/tinysplit"
