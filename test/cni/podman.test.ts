/**
 * Podman 4.3 (Debian 12) with its CNI backend on a lanplug conflist: the
 * network is listed, a container gets its address on the lab LAN from
 * lanplug, reaches the gateway, and gives the address back at `--rm`.
 *
 * Podman runs entirely private to the test: its configuration
 * (CONTAINERS_CONF: the CNI backend, the conflist directory, the plugin
 * directory), storage (--root/--runroot, vfs) and an image imported from the
 * busybox tree; inside the lab host's network namespace, so the daemon's
 * parent is that host's eth0 on the lab LAN.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { LanHost } from '../lab/lan';
import { busyboxRootfsTar } from '../lab/image';
import { startDhcpServer, type DhcpServer } from '../lab/dhcp-server';
import type { DaemonLab } from '../support/daemon';
import { CNI_LAB_GATEWAY, startCniLab, type CniLab } from '../support/cni';

const GATEWAY = CNI_LAB_GATEWAY;
const IMAGE = 'localhost/lanplug-busybox:latest';
/** Podman's default rlimits are refused in this sandbox (DESIGN: "Test lanes"). */
const LIMITS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];

let lab: CniLab;
let host: LanHost;
let daemon: DaemonLab;
let dir: string;
let env: NodeJS.ProcessEnv;
/** The LAN's DHCP server, for the `lanplug-dhcp` network; its range is apart from labnet's. */
let dhcpServer: DhcpServer;

function podman(...args: string[]): { code: number; stdout: string; stderr: string } {
  const storage = ['--root', join(dir, 'root'), '--runroot', join(dir, 'runroot'), '--storage-driver', 'vfs'];
  const r = spawnSync('nsenter', [`--net=/run/netns/${host.ns}`, '--', 'podman', ...storage, ...args], {
    env,
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

before(async () => {
  lab = await startCniLab();
  ({ host, daemon } = lab);
  const { plugin } = lab;
  dir = mkdtempSync(join(tmpdir(), 'lanplug-podman-'));
  const netDir = join(dir, 'net.d');
  mkdirSync(netDir);
  writeFileSync(
    join(netDir, 'labnet.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'labnet',
      plugins: [
        {
          type: 'lanplug-macvlan',
          master: 'eth0',
          mode: 'bridge',
          ipam: {
            type: 'lanplug',
            subnet: '172.16.86.0/24',
            rangeStart: '172.16.86.200',
            rangeEnd: '172.16.86.209',
            gateway: GATEWAY,
            routes: [{ dst: '0.0.0.0/0' }],
          },
        },
      ],
    }),
  );
  writeFileSync(
    join(netDir, 'dhcpnet.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'dhcpnet',
      plugins: [{ type: 'lanplug-macvlan', master: 'eth0', mode: 'bridge', ipam: { type: 'lanplug-dhcp' } }],
    }),
  );
  dhcpServer = await startDhcpServer(lab.lan, { range: ['172.16.86.220', '172.16.86.239'], router: GATEWAY });
  const conf = join(dir, 'containers.conf');
  writeFileSync(
    conf,
    [
      '[network]',
      'network_backend = "cni"',
      `network_config_dir = "${netDir}"`,
      `cni_plugin_dirs = ["${dirname(plugin)}", "/usr/lib/cni"]`,
      '[engine]',
      // runc, not Podman's default crun: crun refuses every container on a hybrid cgroup layout whose
      // v2 root offers a controller (hugetlb on machines whose v1 mounts leave it out), as the lab's
      // Podman 5/6 hosts do (podman-host.ts).
      'runtime = "runc"',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      `events_logfile_path = "${join(dir, 'events.log')}"`,
      '',
    ].join('\n'),
  );
  env = { PATH: process.env['PATH'], HOME: dir, CONTAINERS_CONF: conf, XDG_RUNTIME_DIR: join(dir, 'xdg') };
  const imported = podman('import', busyboxRootfsTar(), IMAGE);
  assert.equal(imported.code, 0, imported.stderr);
});

after(() => {
  if (dir !== undefined) {
    podman('rm', '-a', '-f');
    // vfs layers are plain directories; podman's own reset would also touch /var/lib/containers.
    rmSync(dir, { recursive: true, force: true });
  }
  dhcpServer?.stop();
  lab?.close();
});

test('podman network ls lists the lanplug conflist', () => {
  const out = podman('network', 'ls', '--format', '{{.Name}} {{.Driver}}');
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /^labnet lanplug-macvlan$/m);
  assert.match(out.stdout, /^dhcpnet lanplug-macvlan$/m);
});

test('podman run --network gets an address from lanplug, reaches the gateway, and gives it back at --rm', () => {
  const script = `ip -4 -o addr show eth0 && ip route && ping -c 1 -W 2 ${GATEWAY}`;
  const first = podman('run', '--rm', ...LIMITS, '--network', 'labnet', IMAGE, 'sh', '-c', script);
  assert.equal(first.code, 0, `${first.stdout}\n${first.stderr}`);
  assert.match(first.stdout, /inet 172\.16\.86\.200\/24/);
  assert.match(first.stdout, new RegExp(`default via ${GATEWAY}`));
  assert.match(first.stdout, /1 packets received/);
  // The address went back at --rm: the next container gets the same one.
  const second = podman(
    'run',
    '--rm',
    ...LIMITS,
    '--network',
    'labnet',
    IMAGE,
    'ip',
    '-4',
    '-o',
    'addr',
    'show',
    'eth0',
  );
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stdout, /inet 172\.16\.86\.200\/24/);
});

test('the idle CNI network is removed after its last container', async () => {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const status = await daemon.cli(['status', '--state-dir', daemon.stateDir]);
    if (!/labnet/.test(status.stdout)) break;
    if (Date.now() > deadline) assert.fail(`cni:labnet still there:\n${status.stdout}`);
    await new Promise((r) => setTimeout(r, 250));
  }
});

test('podman restart and stop/start on a lanplug-dhcp network: the container keeps its MAC and its address; another container gets its own', () => {
  const started = podman('run', '-d', ...LIMITS, '--name', 'keeper', '--network', 'dhcpnet', IMAGE, 'sleep', '3600');
  assert.equal(started.code, 0, started.stderr);
  const identity = (name: string): { mac: string; address: string } => {
    const out = podman('exec', name, 'ip', '-o', 'addr', 'show', 'eth0');
    assert.equal(out.code, 0, out.stderr);
    return {
      mac:
        /link\/ether ([0-9a-f:]{17})/.exec(podman('exec', name, 'ip', '-o', 'link', 'show', 'eth0').stdout)?.[1] ?? '?',
      address: /inet (172\.16\.86\.\d+)\//.exec(out.stdout)?.[1] ?? '?',
    };
  };
  try {
    const first = identity('keeper');
    assert.match(first.address, /^172\.16\.86\.2[23]\d$/, `an address of the server's range: ${first.address}`);
    assert.equal(podman('restart', '-t', '1', 'keeper').code, 0);
    assert.deepEqual(identity('keeper'), first, 'the same MAC and address after podman restart');
    assert.equal(podman('stop', '-t', '1', 'keeper').code, 0);
    assert.equal(podman('start', 'keeper').code, 0);
    assert.deepEqual(identity('keeper'), first, 'the same MAC and address after podman stop and start');
    assert.equal(dhcpServer.leases().filter((l) => l.mac === first.mac).length, 1, 'one client to the server');
    const other = podman('run', '-d', ...LIMITS, '--name', 'other', '--network', 'dhcpnet', IMAGE, 'sleep', '3600');
    assert.equal(other.code, 0, other.stderr);
    const second = identity('other');
    assert.notEqual(second.mac, first.mac, 'another container never gets its MAC');
    assert.notEqual(second.address, first.address, 'nor its address');
  } finally {
    podman('rm', '-f', '-t', '0', 'keeper', 'other');
  }
});
