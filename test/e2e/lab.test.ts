// Proves the test lab (test/lab/: lan.ts, docker-host.ts, lanplug.ts, sweep.ts) with Docker's BUILT-IN macvlan driver, the plugin
// directory plumbing with a stand-in plugin, and the stale-lab cleanup after a crashed run.
// Needs root, Debian's docker.io (dockerd 20.10) and busybox-static.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createDockerHost, type DockerHost } from '../lab/docker-host';
import { createLan, type Lan } from '../lab/lan';
import { startLanplug } from '../lab/lanplug';
import { cleanupStaleLab, labLeftovers } from '../lab/sweep';

// LAN hosts run the machine's programs; iputils-ping may be missing, busybox-static is a lab dependency
const BUSYBOX = '/bin/busybox';

function pgrep(pattern: string): string {
  return spawnSync('pgrep', ['-a', '-f', pattern], { encoding: 'utf8' }).stdout.trim();
}

function leftoversOf(id: string): string[] {
  const l = labLeftovers();
  return [...l.namespaces, ...l.dirs, ...l.cgroups].filter((x) => x.includes(id));
}

before(() => {
  const r = cleanupStaleLab();
  if (r.namespaces.length + r.pids.length + r.dirs.length > 0) {
    console.log(`# cleaned stale lab: ${JSON.stringify(r)}`);
  }
});

describe('lab with Docker built-in macvlan', () => {
  let lan: Lan | undefined;
  let dh: DockerHost | undefined;
  after(() => lan?.destroy());

  test('macvlan bridge mode: container on the LAN reaches the gateway and a LAN host', async (t) => {
    const t0 = performance.now();
    lan = createLan({ addresses: ['172.16.86.1/24', '2001:db8:abc8::1/64'] });
    const other = lan.addLanHost('host10', ['172.16.86.10/24', '2001:db8:abc8::10/64']);
    const t1 = performance.now();
    dh = await createDockerHost(lan);
    const t2 = performance.now();
    t.diagnostic(
      `lab setup: LAN + LAN host ${(t1 - t0).toFixed(0)} ms, docker host (dockerd ready + image import) ${(t2 - t1).toFixed(0)} ms`,
    );

    // dockerd runs on the containerd the lab started first, in dockerd's network and private mount namespaces
    const ctrd = dh.containerdPid();
    assert.ok(ctrd !== undefined, 'the lab started containerd');
    const nsOf = (pid: number, kind: string): string => fs.readlinkSync(`/proc/${pid}/ns/${kind}`);
    assert.equal(nsOf(ctrd, 'net'), nsOf(dh.dockerdPid, 'net'));
    assert.equal(nsOf(ctrd, 'mnt'), nsOf(dh.dockerdPid, 'mnt'));
    assert.notEqual(nsOf(ctrd, 'mnt'), fs.readlinkSync('/proc/self/ns/mnt'));
    assert.ok(fs.readFileSync(`/proc/${dh.dockerdPid}/cmdline`, 'utf8').split('\0').includes(dh.containerdSock));

    // the LAN itself works, IPv4 and IPv6 (no DAD wait)
    other.execOk([BUSYBOX, 'ping', '-c1', '-W2', '172.16.86.1']);
    other.execOk([BUSYBOX, 'ping6', '-c1', '-W2', '2001:db8:abc8::1']);
    assert.match(dh.execOk(['ip', '-o', 'link', 'show', 'eth0']), /mtu 1500 .*state UP/);

    dh.dockerOk([
      'network',
      'create',
      '-d',
      'macvlan',
      '--subnet=172.16.86.0/24',
      '--gateway=172.16.86.1',
      '-o',
      'parent=eth0',
      'my-macvlan-net',
    ]);
    dh.dockerOk([
      'run',
      '--rm',
      '-dit',
      '--network',
      'my-macvlan-net',
      '--name',
      'my-macvlan-alpine',
      'alpine:latest',
      'ash',
    ]);
    const inspect = JSON.parse(dh.dockerOk(['container', 'inspect', 'my-macvlan-alpine'])) as Array<{
      NetworkSettings: {
        Networks: Record<string, { MacAddress: string; IPAddress: string; Gateway: string; IPPrefixLen: number }>;
      };
    }>;
    const ep = inspect[0]?.NetworkSettings.Networks['my-macvlan-net'];
    assert.ok(ep, 'container is attached to my-macvlan-net');
    assert.equal(ep.MacAddress, '02:42:ac:10:56:02');
    assert.equal(ep.IPAddress, '172.16.86.2');
    assert.equal(ep.Gateway, '172.16.86.1');
    assert.equal(ep.IPPrefixLen, 24);

    dh.dockerOk(['exec', 'my-macvlan-alpine', 'ping', '-c1', '-W2', '172.16.86.1']);
    dh.dockerOk(['exec', 'my-macvlan-alpine', 'ping', '-c1', '-W2', '172.16.86.10']);
    other.execOk([BUSYBOX, 'ping', '-c1', '-W2', '172.16.86.2']); // and pinged back from the LAN host
    assert.match(dh.dockerOk(['exec', 'my-macvlan-alpine', 'ip', 'route']), /default via 172\.16\.86\.1 dev eth0/);

    dh.setHairpin(true);
    assert.match(lan.execOk(['bridge', '-d', 'link', 'show', 'dev', dh.port]), /hairpin on/);
    dh.setHairpin(false);

    dh.dockerOk(['stop', '-t', '1', 'my-macvlan-alpine']);
    dh.dockerOk(['network', 'rm', 'my-macvlan-net']);
    assert.equal(dh.dockerOk(['network', 'ls', '-q', '--filter', 'driver=macvlan']).trim(), '');

    const id = lan.id;
    const t3 = performance.now();
    lan.destroy();
    t.diagnostic(`lab teardown: ${(performance.now() - t3).toFixed(0)} ms`);
    assert.deepEqual(leftoversOf(id), []);
    assert.equal(pgrep(`lp-lab-${id}`), '');
  });
});

describe('lab plugin directory (stand-in plugin)', () => {
  let lan: Lan | undefined;
  after(() => lan?.destroy());

  test('dockerd discovers a plugin socket in DockerHost.pluginDir; startLanplug captures stderr and stops it', async (t) => {
    lan = createLan();
    const dh = await createDockerHost(lan, { image: false });
    const fake = path.join(__dirname, '..', 'lab', 'fake-plugin.js');
    const t0 = performance.now();
    const lp = await startLanplug(dh, { command: [process.execPath, fake] });
    t.diagnostic(`stand-in plugin ready in ${(performance.now() - t0).toFixed(0)} ms`);
    assert.ok(fs.existsSync(path.join(dh.pluginDir, 'lanplug-macvlan.sock')));
    // the socket is NOT in the machine's /run/docker/plugins: dockerd sees pluginDir there
    assert.ok(!fs.existsSync('/run/docker/plugins/lanplug-macvlan.sock'));
    assert.ok(dh.execOk(['ls', '/run/docker/plugins']).includes('lanplug-macvlan.sock'));

    dh.dockerOk([
      'network',
      'create',
      '-d',
      'lanplug-macvlan',
      '--subnet=172.16.86.0/24',
      '--gateway=172.16.86.1',
      '-o',
      'parent=eth0',
      'pub_net',
    ]);
    dh.dockerOk(['network', 'rm', 'pub_net']);
    const log = lp.stderr();
    assert.match(log, /\/Plugin\.Activate/);
    assert.match(log, /\/NetworkDriver\.CreateNetwork .*"parent":"eth0"/);
    assert.match(log, /\/NetworkDriver\.DeleteNetwork/);
    // it runs in the docker host's network namespace
    const netns = fs.readlinkSync(`/proc/${lp.pid}/ns/net`);
    assert.equal(netns, `net:[${fs.statSync(`/run/netns/${dh.ns}`).ino}]`);

    assert.equal(await lp.stop(), 0);
    assert.match(lp.stderr(), /SIGTERM/);
    assert.ok(!fs.existsSync(path.join(dh.pluginDir, 'lanplug-macvlan.sock')));

    // a daemon that dies at start is reported with its stderr
    await assert.rejects(
      startLanplug(dh, { command: [process.execPath, '-e', 'console.error("boom"); process.exit(3)', '--'] }),
      /exited \(code 3.*\n(.|\n)*boom/,
    );
    const id = lan.id;
    lan.destroy();
    assert.deepEqual(leftoversOf(id), []);
  });
});

describe('cleanupStaleLab', () => {
  test('removes a lab whose owner was SIGKILLed with a container running', () => {
    const labDir = path.join(__dirname, '..', 'lab');
    const script = `
      const { createLan } = require(process.argv[1] + '/lan.js');
      const { createDockerHost } = require(process.argv[1] + '/docker-host.js');
      (async () => {
        const lan = createLan();
        const dh = await createDockerHost(lan);
        dh.dockerOk(['run', '-d', '--network', 'none', '--name', 'c1', 'alpine:latest', 'sleep', '1000']);
        process.stdout.write(lan.id + '\\n');
        process.kill(process.pid, 'SIGKILL');
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const r = spawnSync(process.execPath, ['-e', script, labDir], { encoding: 'utf8', timeout: 180_000 });
    const id = r.stdout.trim();
    assert.equal(r.signal, 'SIGKILL', r.stderr);
    assert.match(id, /^[0-9a-f]{6}$/);
    assert.notEqual(pgrep(`lp-lab-${id}/`), '', 'dockerd/containerd/shim of the crashed lab still run');
    assert.notDeepEqual(leftoversOf(id), []);

    const report = cleanupStaleLab();
    assert.ok(
      report.namespaces.some((n) => n.includes(id)),
      JSON.stringify(report),
    );
    assert.ok(report.pids.length >= 3, JSON.stringify(report)); // dockerd, containerd, shim, sleep
    assert.equal(pgrep(`lp-lab-${id}/`), '');
    assert.deepEqual(leftoversOf(id), []);
  });
});
