/**
 * Podman 5.8 with netavark 1.17 (Debian sid, in the lane's sid root) on lanplug's netavark
 * plugins: `podman network create -d lanplug-macvlan` validated by lanplug, `podman run` getting
 * its address on the lab LAN from lanplug and reaching the gateway, `--ip` and `--mac-address`,
 * a bad option refused at create in lanplug's one line, a LAN conflict refused naming the device's
 * MAC, host access both ways, DHCP from the lab's dnsmasq, and no link left after `podman network
 * rm` (the cases of podman-lane.ts, which podman6.test.ts runs on Podman 6 too). With figures: a
 * `podman run` on lanplug's plugin, with and without its LAN probe, beside one on netavark's own
 * macvlan.
 *
 * Podman runs chrooted in the sid root, in one mount namespace that every command enters and that
 * lives as long as the file's lab (test/lab/podman-host.ts), so a detached container outlives the
 * command that started it: `podman run -d`, `podman restart` and `podman rm -f` are tested too.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { labDir, podmanHostCgroup } from '../lab/names';
import { PodmanHost } from '../lab/podman-host';
import { isAlive } from '../lab/proc';
import { ensureSidRoot } from '../lab/sid-root';
import { cleanupStaleLab, findCgroupDirs, mountPointsUnder, podmanNetnsOf } from '../lab/sweep';
import { median } from '../support/netavark';
import {
  DETACHED,
  GATEWAY,
  IMAGE,
  LIMITS,
  RUN,
  podmanUserCases,
  startPodmanLane,
  type PodmanLane,
} from './podman-lane';

let root: string;
let lane: PodmanLane;

before(async () => {
  root = ensureSidRoot();
  lane = await startPodmanLane({ root, dirName: 'podman' });
  console.log(`# ${lane.versions}`);
});

after(() => {
  lane?.close();
});

/**
 * Run by sh in a mount namespace of its own whose `/` is made rshared (as systemd makes the
 * machine's): $1 root, $2 a Podman host directory, $3 a netns name, then the holder's command.
 * Starts the holder, mounts there what Podman would (a tmpfs in its directory, a netns under the
 * root's /run/netns), and prints what of that this namespace sees, then again once the holder is gone.
 */
const SHARED_ROOT_PROBE = `set -e
root=$1; dir=$2; probe=$3; shift 3
mount --make-rshared /
"$@" >"$dir/probe-holder.log" 2>&1 &
holder=$!
until [ -e "$dir/holder.ready" ]; do
  kill -0 "$holder" 2>/dev/null || { cat "$dir/probe-holder.log" >&2; exit 1; }
  sleep 0.05
done
under() { findmnt -rn -o TARGET | awk -v p="$1" 'index($0, p) == 1' | wc -l; }
mkdir "$dir/shm"
nsenter --mount=/proc/$holder/ns/mnt -- mount -t tmpfs shm "$root$dir/shm"
nsenter --mount=/proc/$holder/ns/mnt -- sh -c 'touch "$1" && mount --bind /proc/self/ns/net "$1"' sh "$root/run/netns/$probe"
echo "holding: root $(under "$root") dir $(under "$dir") netns $(under "/run/netns/$probe")"
umount "/run/netns/$probe"; rm "/run/netns/$probe"
kill "$holder"; wait "$holder" || true
echo "gone: root $(under "$root") dir $(under "$dir")"
`;

test('the Podman host’s mounts stay in its namespace where / is shared (systemd’s default): only a netns under its /run/netns reaches the machine’s', () => {
  const probeDir = join(lane.lab.lan.dir, 'probe');
  mkdirSync(probeDir);
  const probe = `lp-lh-${lane.lab.lan.id}-probe`;
  const holder = PodmanHost.holderArgv(root, probeDir, dirname(lane.lab.socket));
  const out = spawnSync(
    'unshare',
    [
      '--mount',
      '--propagation',
      'unchanged',
      '--',
      'sh',
      '-c',
      SHARED_ROOT_PROBE,
      'sh',
      root,
      probeDir,
      probe,
      ...holder,
    ],
    { encoding: 'utf8', timeout: 30_000 },
  );
  assert.equal(out.status, 0, out.stderr);
  assert.match(out.stdout, /^holding: root 0 dir 0 netns 1$/m, 'while the holder lives');
  assert.match(out.stdout, /^gone: root 0 dir 0$/m, 'once it is gone');
});

/**
 * Run by node as a test process that crashes: $1 the lab's compiled directory, $2 the root, $3 a
 * socket directory, $4 podman run's limits (JSON). Makes a lab with a Podman host, a container
 * running detached on netavark's macvlan (its netns in /run/netns), prints the lab's id and the
 * container's pid, and SIGKILLs itself: no after hook, no exit hook.
 */
const CRASHING_TEST_PROCESS = `
const fs = require('node:fs');
const path = require('node:path');
const [lib, root, socketDir, limits] = process.argv.slice(1);
const { createLan } = require(lib + '/lan.js');
const { PodmanHost, labContainersConf } = require(lib + '/podman-host.js');
const { busyboxRootfsTar } = require(lib + '/image.js');
const lan = createLan();
const host = lan.addLanHost('host', '172.16.86.2/24');
const dir = path.join(lan.dir, 'podman');
fs.mkdirSync(dir);
fs.writeFileSync(path.join(dir, 'containers.conf'), labContainersConf({ dir }));
const podman = PodmanHost.start({ root, labId: lan.id, dir, netns: host.ns, socketDir });
const ok = (...args) => {
  const r = podman.podman(...args);
  if (r.code !== 0) throw new Error('podman ' + args.join(' ') + ': ' + r.stderr);
  return r.stdout.trim();
};
fs.copyFileSync(busyboxRootfsTar(), path.join(dir, 'busybox.tar'));
ok('import', path.join(dir, 'busybox.tar'), 'localhost/crash:latest');
ok('network', 'create', '-d', 'macvlan', '-o', 'parent=eth0', '--subnet', '172.16.86.0/24', 'crash');
const id = ok('run', '--detach', ...JSON.parse(limits), '--network', 'crash', 'localhost/crash:latest', 'sleep', '600');
process.stdout.write(lan.id + ' ' + ok('inspect', '--format', '{{.State.Pid}}', id) + '\\n');
process.kill(process.pid, 'SIGKILL');
`;

test('after a crash, the lab’s sweep ends the Podman host’s containers and removes their network namespaces, cgroups and directory; no mount is left', () => {
  const r = spawnSync(
    process.execPath,
    ['-e', CRASHING_TEST_PROCESS, join(__dirname, '..', 'lab'), root, dirname(lane.lab.socket), JSON.stringify(LIMITS)],
    { encoding: 'utf8', timeout: 180_000 },
  );
  assert.equal(r.signal, 'SIGKILL', r.stderr);
  const [id = '', pid = ''] = r.stdout.trim().split(' ');
  const container = Number(pid);
  const cgroup = (name: string): boolean => name === podmanHostCgroup(id);
  assert.ok(isAlive(container), 'the crashed host’s container still runs');
  const netns = podmanNetnsOf(cgroup);
  assert.equal(netns.length, 1, 'its network namespace is in /run/netns');

  const report = cleanupStaleLab();
  assert.ok(report.namespaces.includes(netns[0] ?? '-'), JSON.stringify(report));
  assert.ok(!isAlive(container), 'the container is ended');
  assert.ok(!existsSync(`/run/netns/${netns[0] ?? '-'}`), 'its network namespace is gone');
  assert.deepEqual(findCgroupDirs(cgroup), [], 'its cgroups are gone');
  assert.ok(!existsSync(labDir(id)), 'the lab’s directory is gone');
  assert.deepEqual([...mountPointsUnder(root), ...mountPointsUnder(labDir(id))], [], 'no mount is left');
});

podmanUserCases(() => lane);

test('podman run --rm succeeds 5 times on lanplug’s plugin (with and without the LAN probe) and on netavark’s own macvlan, each leaving no link behind (their times printed side by side: the bench for setup cost, docs/podman.md "How fast")', () => {
  const { podmanOk } = lane;
  const macvlanNetwork = (name: string, driver: string, ipRange: string, ...options: string[]): void => {
    podmanOk(
      'network',
      'create',
      '-d',
      driver,
      '-o',
      'parent=eth0',
      ...options,
      '--subnet',
      '172.16.86.0/24',
      '--gateway',
      GATEWAY,
      '--ip-range',
      ipRange,
      name,
    );
  };
  macvlanNetwork('nvmacvlan', 'macvlan', '172.16.86.192/27');
  macvlanNetwork('lanprobe', 'lanplug-macvlan', '172.16.86.128/28');
  macvlanNetwork('lanoff', 'lanplug-macvlan', '172.16.86.176/28', '-o', 'lanplug.conflict=off');
  // Each lanplug network held by a running container, as on a host that runs containers on it (the lab
  // daemon's --cni-network-idle of 1 s would otherwise remove it between runs, and every run would pay
  // for the network's creation and a cold probe: docs/podman.md "How fast").
  const holders = ['lanprobe', 'lanoff'].map((n) =>
    podmanOk(...DETACHED, '--network', n, IMAGE, 'sleep', '600').stdout.trim(),
  );
  const times: Record<string, number[]> = { lanprobe: [], lanoff: [], nvmacvlan: [] };
  for (let i = 0; i < 5; i++)
    for (const network of Object.keys(times))
      times[network]?.push(podmanOk(...RUN, '--network', network, IMAGE, 'true').ms);
  for (const holder of holders) podmanOk('rm', '--force', '--time', '0', holder);
  assert.doesNotMatch(lane.macvlanLinksOfHost(), /: lp-[0-9a-f]{12}[@:]/, 'no endpoint link left by --rm');
  const ms = (network: string): string => median(times[network] ?? []).toFixed(0);
  console.log(
    `# podman run --rm true, median of 5, whole command: lanplug-macvlan ${ms('lanprobe')} ms, with -o lanplug.conflict=off ${ms('lanoff')} ms, netavark macvlan ${ms('nvmacvlan')} ms`,
  );
  podmanOk('network', 'rm', 'nvmacvlan');
  podmanOk('network', 'rm', 'lanoff');
  podmanOk('network', 'rm', 'lanprobe');
});
