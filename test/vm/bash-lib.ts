// Bash helpers for scripts run in the full-kernel VM (paste `${VM_BASH_LIB}` at the top of a
// script): timing marks, waiting against a deadline, namespaces, and a dockerd (with its own
// containerd started first) and a lanplug daemon in a namespace. vm-smoke.test.ts uses them;
// the Docker tests inside the VM use the lab (test/lab/) instead, which starts dockerd the same way.

/**
 * Functions for VM scripts. They take their paths from arguments and the environment only.
 *   vm_mark NAME             prints `MARK NAME <ms since script start>` (timings for the host)
 *   vm_wait_for TIMEOUT_S CMD...   retries CMD every 0.2 s until it succeeds, else fails
 *   vm_netns NS              creates a namespace with lo up
 *   vm_start_dockerd NS DIR  Debian's containerd, then dockerd in NS, all state under DIR (tmpfs);
 *                            defines `dk` = /usr/bin/docker -H unix://DIR/docker.sock; waits until it answers
 *   vm_start_lanplug NS STATE_DIR [PLUGIN_DIR]   `node $LANPLUG_REPO/bin/lanplug daemon` in NS,
 *                            waits for its sockets in PLUGIN_DIR (default /run/docker/plugins)
 * Every wait is a deadline with room for a loaded machine (TCG on 2 shared cores): waiting
 * longer costs nothing when things go well.
 */
export const VM_BASH_LIB = String.raw`
VM_T0=$(date +%s%3N)
vm_mark() { echo "MARK $1 $(( $(date +%s%3N) - VM_T0 ))"; }
vm_wait_for() {
  # a deadline, not a count: one try of a big binary can take seconds under TCG
  local end=$(( $(date +%s) + $1 )); shift
  until timeout 30 "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || { echo "vm_wait_for: gave up on: $*" >&2; return 1; }
    sleep 0.2
  done
}
vm_netns() { ip netns add "$1"; ip -n "$1" link set lo up; }
vm_start_dockerd() {
  local ns=$1 dir=$2
  mkdir -p "$dir/data" "$dir/run" "$dir/containerd"
  VM_DOCKER_DIR=$dir
  # containerd first, waited for against a deadline: dockerd gives its own child containerd only
  # ~15 s to answer, which a cold start over 9p under TCG can exceed. Its own config, as the lab
  # writes it: no CRI plugin, nothing read from /etc/containerd.
  cat > "$dir/containerd/config.toml" <<VM_CONTAINERD_TOML
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$dir/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd/opt"
VM_CONTAINERD_TOML
  nsenter --net="/run/netns/$ns" /usr/bin/containerd --config "$dir/containerd/config.toml" \
    > "$dir/containerd.log" 2>&1 &
  VM_CONTAINERD_PID=$!
  vm_wait_for 180 test -S "$dir/containerd.sock" \
    || { echo "containerd did not come up; its log:" >&2; tail -n 40 "$dir/containerd.log" >&2; return 1; }
  nsenter --net="/run/netns/$ns" /usr/sbin/dockerd --iptables=false --ip6tables=false --bridge=none \
    --data-root "$dir/data" --exec-root "$dir/run" --pidfile "$dir/docker.pid" --containerd "$dir/containerd.sock" \
    -H "unix://$dir/docker.sock" > "$dir/dockerd.log" 2>&1 &
  VM_DOCKERD_PID=$!
  vm_wait_for 180 /usr/bin/docker -H "unix://$dir/docker.sock" version \
    || { echo "dockerd did not come up; its log:" >&2; tail -n 40 "$dir/dockerd.log" >&2; return 1; }
}
dk() { /usr/bin/docker -H "unix://$VM_DOCKER_DIR/docker.sock" "$@"; }
vm_start_lanplug() {
  local ns=$1 state=$2 plugins=/run/docker/plugins
  [ $# -lt 3 ] || plugins=$3
  mkdir -p "$state" "$plugins"
  nsenter --net="/run/netns/$ns" node "$LANPLUG_REPO/bin/lanplug" daemon --state-dir "$state" \
    --plugin-dir "$plugins" > "$state/lanplug.log" 2>&1 &
  VM_LANPLUG_PID=$!
  vm_wait_for 120 test -S "$plugins/lanplug-macvlan.sock" \
    || { echo "lanplug did not come up; its log:" >&2; tail -n 40 "$state/lanplug.log" >&2; return 1; }
}
`;
