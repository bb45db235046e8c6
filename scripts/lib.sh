# Shared by scripts/start, scripts/demo and scripts/test: install what is
# missing, or stop with one line that says exactly what to run.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() {
  printf 'lanplug: %s\n' "$*" >&2
  exit 1
}

# The daemon and the tests need Node.js 20.12 or newer (package.json's engines).
require_node() {
  local version
  version=$(node -p 'process.versions.node' 2>/dev/null) || die "Node.js not found; install Node.js 20.12 or newer"
  node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 12) ? 0 : 1)' ||
    die "lanplug needs Node.js 20.12 or newer, found $version"
}
require_node

require_root() {
  [ "$(id -u)" = 0 ] || die "$1 needs root (it creates network namespaces and links); run: sudo npm $2"
}

# ensure_packages CMD:PACKAGE ... -> apt-get installs the packages whose command is missing.
ensure_packages() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || [ -e "${pair%%:*}" ] || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]}; install them with your package manager"
  [ "$(id -u)" = 0 ] || die "missing ${missing[*]}; run: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
  printf 'lanplug: installing %s\n' "${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_node_modules() {
  local m missing=
  for m in better-sqlite3 koffi typescript eslint prettier; do [ -d "$REPO_ROOT/node_modules/$m" ] || missing=1; done
  if [ -n "$missing" ]; then
    printf 'lanplug: installing npm packages (npm ci)\n' >&2
    (cd "$REPO_ROOT" && npm ci --no-audit --no-fund)
  fi
}

# Rebuilds when any source is newer than the last build.
ensure_built() {
  ensure_node_modules
  local stamp="$REPO_ROOT/dist/.built"
  if [ ! -f "$stamp" ] || [ -n "$(find "$REPO_ROOT/src" "$REPO_ROOT/test" "$REPO_ROOT/tsconfig.json" -newer "$stamp" -print -quit)" ]; then
    # From scratch: a renamed or deleted source must not leave its old test file to be run.
    rm -rf "$REPO_ROOT/dist"
    (cd "$REPO_ROOT" && npx tsc -p .) || die "build failed; see the TypeScript errors above"
    touch "$stamp"
  fi
}

# The Docker engine the lab runs: Debian's docker.io (dockerd 20.10 and its own client).
LAB_PACKAGES=(/usr/sbin/dockerd:docker.io /bin/busybox:busybox-static ip:iproute2 nsenter:util-linux)
# `lanplug install` is checked with systemd's own tools (no systemd as PID 1 needed).
SERVICE_PACKAGES=(systemd-analyze:systemd systemd-socket-activate:systemd)
# The DHCP tests' server on the lab LAN: Debian's dnsmasq (the binary only, no service).
DHCP_PACKAGES=(/usr/sbin/dnsmasq:dnsmasq-base)
# What the LAN hears (test/lab/frame-count.ts): a packet socket in python3, apart from lanplug's own.
CAPTURE_PACKAGES=(python3:python3)
# The Docker 28 lane: sid's docker.io runs in a Debian sid root the tests build once with
# debootstrap into <repo>/.lab/docker28 (test/lab/sid-root.ts); the lab's other tools are the machine's.
DOCKER28_PACKAGES=(debootstrap:debootstrap /bin/busybox:busybox-static ip:iproute2 nsenter:util-linux)
# The e2e lane runs `docker compose` too: sid's compose v2 from the Docker 28 lane's sid root, which
# it builds with debootstrap if missing (test/lab/compose.ts).
COMPOSE_PACKAGES=(debootstrap:debootstrap)
# The chaos test cuts a Docker host off etcd with a DROP rule in that host's namespace, and checks the
# state database of a host whose disk filled with the sqlite3 shell.
CHAOS_PACKAGES=(iptables:iptables sqlite3:sqlite3)
# Shared pools: Debian's etcd 3.4 and etcdctl (the tests start their own 3-member cluster; the service is not used).
ETCD_PACKAGES=(/usr/bin/etcd:etcd-server /usr/bin/etcdctl:etcd-client)
# The CNI lane: a C compiler for the CNI executable, the reference plugins (the bench's peer), Podman.
CNI_PACKAGES=(cc:gcc /usr/include/stdio.h:libc6-dev /usr/lib/cni/macvlan:containernetworking-plugins podman:podman runc:runc)
# The full-kernel lane: qemu, and xz to unpack Debian's kernel (linux-image-amd64, checked apart).
VM_PACKAGES=(qemu-system-x86_64:qemu-system-x86 xz:xz-utils)

# Prometheus's own check of the metrics page (`promtool check metrics`): only the binary, taken out of
# Debian's prometheus package into .lab/bin; installing the package would start a Prometheus server.
PROMTOOL="$REPO_ROOT/.lab/bin/promtool"
ensure_promtool() {
  [ -x "$PROMTOOL" ] && return 0
  command -v apt-get >/dev/null 2>&1 || die "promtool not found; put Prometheus's promtool at $PROMTOOL"
  [ "$(id -u)" = 0 ] || die "promtool not found; run: sudo npm test (it takes promtool out of Debian's prometheus package)"
  printf 'lanplug: taking promtool out of Debian'"'"'s prometheus package into .lab/bin\n' >&2
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && { apt-get download -qq prometheus 2>/dev/null || { apt-get update -qq && apt-get download -qq prometheus 2>/dev/null; }; }) ||
    { rm -rf "$tmp"; die "could not download Debian's prometheus package; run: sudo apt-get update"; }
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/unpacked"
  mkdir -p "$(dirname "$PROMTOOL")"
  cp "$tmp/unpacked/usr/bin/promtool" "$PROMTOOL"
  rm -rf "$tmp"
}

# The kernel the full-kernel lane boots: Debian's, with its modules (8021q, ipvlan, dummy).
ensure_debian_kernel() {
  local image
  for image in /boot/vmlinuz-*; do
    [ -f "$image" ] && [ -f "/lib/modules/${image#/boot/vmlinuz-}/modules.dep" ] && return 0
  done
  [ "$(id -u)" = 0 ] || die "no Debian kernel to boot; run: sudo apt-get update && sudo apt-get install -y linux-image-amd64"
  printf 'lanplug: installing linux-image-amd64\n' >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends linux-image-amd64 >/dev/null
}
