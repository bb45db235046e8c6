/**
 * The daemon as a process on the real kernel, in a throw-away namespace with
 * a veth `eth0` as parent, driven over its sockets as dockerd drives it:
 * one daemon per state directory, sockets never taken from a live process,
 * crashes at named steps and what the restarted daemon makes of them, a
 * delete the kernel refuses, and parents that are down or gone.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { unixHttp } from '../../src/api/unix-http';
import { sleep } from '../lab/proc';
import { DaemonLab, spawnDaemon } from '../support/daemon';

const NS = `lp-k-${randomBytes(4).toString('hex')}`;
const NET = '5e3ec79625d388dbcc03dcf4a6dc4548644eb99d58864cf8eee2252dcfc0cc9f';
const EP = '8caf93c862b22f379b60515975acf96f7b54b7cf0ba0fb4a33cf18ae9e5c1d89';
const EP_LINK = 'lp-8caf93c862b2';
let lab: DaemonLab;

function ip(...args: string[]): string {
  return execFileSync('ip', ['-n', NS, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
function hasLink(name: string): boolean {
  try {
    ip('link', 'show', 'dev', name);
    return true;
  } catch {
    return false;
  }
}
/** The link group of a link ('default' for 0): lanplug marks its own with its state directory's. */
function groupOf(name: string): string {
  return (JSON.parse(ip('-j', 'link', 'show', 'dev', name)) as { group: string }[])[0]?.group ?? '?';
}
/** DeleteEndpoint parks the link (down, out of use) and the reaper removes it moments later, off the request path. */
async function linkGone(name: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (hasLink(name)) {
    assert.ok(Date.now() < deadline, `${name} still there ${ms / 1000} s after DeleteEndpoint`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
function linkNames(): string[] {
  return (JSON.parse(ip('-j', 'link', 'show')) as { ifname: string }[]).map((l) => l.ifname).sort();
}

const createNetwork = (parent = 'eth0') => ({
  NetworkID: NET,
  Options: { 'com.docker.network.generic': { parent } },
  IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '172.16.86.0/24', Gateway: '172.16.86.1/24' }],
  IPv6Data: [],
});
const createEndpoint = { NetworkID: NET, EndpointID: EP, Interface: { Address: '172.16.86.2/24', MacAddress: '' } };
const ref = { NetworkID: NET, EndpointID: EP };

before(() => {
  assert.equal(process.getuid?.(), 0, 'the kernel lane needs root');
  execFileSync('ip', ['netns', 'add', NS]);
  ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'lan0');
  ip('link', 'set', 'eth0', 'up');
});
after(() => {
  execFileSync('ip', ['netns', 'del', NS]);
});

function freshLab(): DaemonLab {
  lab?.close();
  lab = new DaemonLab(NS);
  return lab;
}
after(() => lab?.close());

async function stop(proc: { child: { kill(s: NodeJS.Signals): boolean }; exited: Promise<unknown> }): Promise<void> {
  proc.child.kill('SIGTERM');
  await proc.exited;
}

test('one daemon per state directory: a second one exits with one line naming the first; kill -9 frees the directory', async () => {
  const l = freshLab();
  const first = await l.start();
  const second = spawnDaemon(
    NS,
    ['daemon', '--state-dir', l.stateDir, '--plugin-dir', `${l.dir}/other-plugins`],
    `${l.dir}/second.log`,
  );
  const { code } = await second.exited;
  assert.equal(code, 1);
  assert.equal(
    second.stderr().trim().split('\n').pop(),
    `lanplug: another lanplug daemon (pid ${first.pid}) holds ${l.stateDir}/lanplug.lock; one daemon serves a state directory: stop it first, or give this one another --state-dir`,
  );
  first.child.kill('SIGKILL');
  await first.exited;
  const third = await l.start();
  await stop(third);
});

test('a live socket is never taken over; a dead one is replaced; stop removes only the sockets it made', async () => {
  const l = freshLab();
  // Something else answers on lanplug-macvlan.sock: the daemon refuses and touches nothing.
  execFileSync('mkdir', ['-p', l.pluginDir]);
  const squatter: Server = createServer(() => undefined);
  await new Promise<void>((resolve) => squatter.listen(l.socket('macvlan'), resolve));
  const refused = spawnDaemon(
    NS,
    ['daemon', '--state-dir', l.stateDir, '--plugin-dir', l.pluginDir],
    `${l.dir}/refused.log`,
  );
  assert.equal((await refused.exited).code, 1);
  assert.match(
    refused.stderr(),
    new RegExp(
      `lanplug: ${l.socket('macvlan')} is served by another running process; lanplug does not take over a live socket`,
    ),
  );
  assert.equal(existsSync(l.stateDir), false, 'refused before creating its state directory');
  assert.equal(lstatSync(l.socket('macvlan')).isSocket(), true, "the other process's socket is still there");
  await new Promise<void>((resolve) => squatter.close(() => resolve()));
  // A socket file nobody listens on (a crashed run's) is replaced.
  execFileSync('python3', [
    '-c',
    'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])',
    l.socket('ipvlan'),
  ]); // bound, then the process is gone
  const proc = await l.start();
  assert.equal(statSync(l.socket('macvlan')).mode & 0o777, 0o600);
  // Someone replaces a socket file while the daemon runs: at stop, the daemon removes only its own.
  rmSync(l.socket('ipvlan'));
  const replacement = createServer();
  await new Promise<void>((resolve) => replacement.listen(l.socket('ipvlan'), resolve));
  await stop(proc);
  assert.equal(existsSync(l.socket('macvlan')), false, 'its own socket is removed');
  assert.equal(existsSync(l.socket('ipvlan')), true, 'the replacement is left alone');
  await new Promise<void>((resolve) => replacement.close(() => resolve()));
});

test('a crash between creating the endpoint link and answering Join: the restarted daemon keeps the link it owns, and DeleteEndpoint removes it', async () => {
  const l = freshLab();
  let proc = await l.start({ LANPLUG_CRASH_AT: 'join:link-created' });
  assert.equal((await l.call('/NetworkDriver.CreateNetwork', createNetwork())).status, 200);
  assert.equal((await l.call('/NetworkDriver.CreateEndpoint', createEndpoint)).status, 200);
  await assert.rejects(
    l.call('/NetworkDriver.Join', { ...ref, SandboxKey: '/var/run/docker/netns/x' }),
    'the daemon dies before it answers',
  );
  assert.equal((await proc.exited).signal, 'SIGKILL');
  assert.equal(hasLink(EP_LINK), true, 'the crash left the link');
  const group = groupOf(EP_LINK);
  assert.match(group, /^\d+$/, "the link carries the state directory's group");
  // Orphans no record owns, as a crash could leave them (in this daemon's group); links of lanplug's names
  // in another group (another daemon's, or made by someone else); and links lanplug never made.
  ip('link', 'add', 'lp-0123456789ab', 'group', group, 'link', 'eth0', 'type', 'macvlan', 'mode', 'bridge');
  ip('link', 'add', 'lpp-c0ffeeb', 'group', group, 'type', 'bridge');
  ip('link', 'add', 'lp-ba9876543210', 'link', 'eth0', 'type', 'macvlan', 'mode', 'bridge');
  ip('link', 'add', 'lp-notours', 'type', 'veth', 'peer', 'name', 'lp-notours-p');
  ip('link', 'add', 'dm-dockers0wn', 'type', 'bridge');
  proc = await l.start();
  assert.match(proc.stderr(), /"msg":"reconcile","action":"delete-link","target":"lp-0123456789ab"/);
  assert.equal(hasLink('lp-0123456789ab'), false);
  assert.equal(hasLink('lpp-c0ffeeb'), false);
  assert.equal(hasLink(EP_LINK), true, 'owned by a recorded endpoint: kept');
  assert.equal(
    hasLink('lp-notours') && hasLink('dm-dockers0wn') && hasLink('lp-ba9876543210'),
    true,
    'never touches what it did not make',
  );
  ip('link', 'del', 'lp-ba9876543210');
  assert.deepEqual((await l.call('/NetworkDriver.DeleteEndpoint', ref)).status, 200);
  await linkGone(EP_LINK);
  assert.equal((await l.call('/NetworkDriver.DeleteNetwork', { NetworkID: NET })).status, 200);
  await stop(proc);
  ip('link', 'del', 'lp-notours');
  ip('link', 'del', 'dm-dockers0wn');
});

test('a crash after DeleteEndpoint dropped the row: the restarted daemon removes the link it left', async () => {
  const l = freshLab();
  let proc = await l.start({ LANPLUG_CRASH_AT: 'delete-endpoint:row-dropped' });
  await l.call('/NetworkDriver.CreateNetwork', createNetwork());
  await l.call('/NetworkDriver.CreateEndpoint', createEndpoint);
  await l.call('/NetworkDriver.Join', { ...ref, SandboxKey: '/var/run/docker/netns/x' });
  await assert.rejects(l.call('/NetworkDriver.DeleteEndpoint', ref));
  await proc.exited;
  assert.equal(hasLink(EP_LINK), true);
  proc = await l.start();
  assert.equal(hasLink(EP_LINK), false, 'the leftover was finished at start');
  const status = await l.cli(['status', '--state-dir', l.stateDir]);
  assert.doesNotMatch(status.stdout, /leftover|endpoint/);
  await l.call('/NetworkDriver.DeleteNetwork', { NetworkID: NET });
  await stop(proc);
});

test("a dockerd killed while its container ran never moves the link back: DeleteEndpoint removes lanplug's link from the sandbox left behind (also across a daemon restart), nothing else there, and nothing in a sandbox a process lives in", async () => {
  const l = freshLab();
  const [left, lived] = [`${NS}-sb`, `${NS}-sb2`];
  const EP2 = EP.replace(/^8/, '9');
  const ref2 = { NetworkID: NET, EndpointID: EP2 };
  for (const sb of [left, lived]) execFileSync('ip', ['netns', 'add', sb]);
  const inSandbox = (sb: string, ...args: string[]): string =>
    execFileSync('ip', ['-n', sb, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const sandboxLinks = (sb: string): string[] =>
    (JSON.parse(inSandbox(sb, '-j', 'link', 'show')) as { ifname: string }[]).map((x) => x.ifname).sort();
  const macOf = (sb: string, name: string): string =>
    (JSON.parse(inSandbox(sb, '-j', 'link', 'show', 'dev', name)) as { address: string }[])[0]?.address ?? '?';
  // A container still running in the second sandbox (Docker's word notwithstanding).
  const resident = spawn('ip', ['netns', 'exec', lived, 'sleep', '60'], { stdio: 'ignore' });
  try {
    let proc = await l.start();
    assert.equal((await l.call('/NetworkDriver.CreateNetwork', createNetwork())).status, 200);
    for (const [r, address, sb] of [
      [ref, '172.16.86.2/24', left],
      [ref2, '172.16.86.3/24', lived],
    ] as const) {
      const created = await l.call('/NetworkDriver.CreateEndpoint', {
        ...r,
        Interface: { Address: address, MacAddress: '' },
      });
      assert.equal(created.status, 200);
      assert.equal((await l.call('/NetworkDriver.Join', { ...r, SandboxKey: `/run/netns/${sb}` })).status, 200);
      // What Docker does at the container's start: the link moves into the sandbox and is named eth0 there.
      const name = `lp-${r.EndpointID.slice(0, 12)}`;
      ip('link', 'set', name, 'netns', sb);
      inSandbox(sb, 'link', 'set', name, 'name', 'eth0');
    }
    const mac = macOf(left, 'eth0');
    const group = (JSON.parse(inSandbox(left, '-j', 'link', 'show', 'dev', 'eth0')) as { group: string }[])[0]?.group;
    // Beside it, links lanplug never made and its own of other endpoints: one of lanplug's group with another
    // MAC, one of another group with the endpoint's MAC (down: the parent lets both exist), and a veth.
    ip('link', 'add', 'lp-0123456789ab', 'group', String(group), 'link', 'eth0', 'type', 'macvlan', 'mode', 'bridge');
    ip('link', 'add', 'lp-ba9876543210', 'address', mac, 'link', 'eth0', 'type', 'macvlan', 'mode', 'bridge');
    for (const name of ['lp-0123456789ab', 'lp-ba9876543210']) ip('link', 'set', name, 'netns', left);
    inSandbox(left, 'link', 'add', 'other0', 'type', 'veth', 'peer', 'name', 'other1');
    // The daemon restarts meanwhile: where the link went is on record, not only in memory.
    await stop(proc);
    proc = await l.start();
    // dockerd, back after kill -9, drops the stale endpoints without moving their links back out.
    assert.equal((await l.call('/NetworkDriver.DeleteEndpoint', ref)).status, 200);
    assert.deepEqual(sandboxLinks(left), ['lo', 'lp-0123456789ab', 'lp-ba9876543210', 'other0', 'other1']);
    assert.match(proc.stderr(), /removed a deleted endpoint's link from the sandbox Docker left behind/);
    assert.equal((await l.call('/NetworkDriver.DeleteEndpoint', ref2)).status, 200);
    assert.deepEqual(sandboxLinks(lived), ['eth0', 'lo'], 'a sandbox a process lives in is left alone');
    assert.match(proc.stderr(), /a deleted endpoint's link is still in a sandbox a process lives in; left there/);
    assert.equal((await l.call('/NetworkDriver.DeleteNetwork', { NetworkID: NET })).status, 200);
    await stop(proc);
  } finally {
    resident.kill();
    for (const sb of [left, lived]) execFileSync('ip', ['netns', 'del', sb]);
  }
});

test('an endpoint Docker forgot once its container was gone (its DeleteEndpoint failed while lanplug restarted): the next endpoint given its address takes it and the stale row goes; while the container starts, while its sandbox is there, and within the grace, the refusal stands', async () => {
  const l = freshLab();
  const sandboxDir = join(l.dir, 'netns');
  execFileSync('mkdir', ['-p', sandboxDir]);
  const sandbox = join(sandboxDir, 'sb1');
  const EP2 = EP.replace(/^8/, '9');
  const EP3 = EP.replace(/^8/, 'a');
  const GRACE_MS = 3_000;
  const refusedTwice = /address 172\.16\.86\.2 of this network is already held by endpoint 8caf93c862b2/;
  const proc = await l.start({}, ['--grace-seconds', String(GRACE_MS / 1000)]);
  assert.equal((await l.call('/NetworkDriver.CreateNetwork', createNetwork())).status, 200);
  assert.equal((await l.call('/NetworkDriver.CreateEndpoint', createEndpoint)).status, 200);
  const made = Date.now();
  // Docker joins before the sandbox's file exists (it is made at runc's hook, when the link moves in):
  // a container still starting, given the same address twice, is not taken for a forgotten one.
  assert.equal((await l.call('/NetworkDriver.Join', { ...ref, SandboxKey: sandbox })).status, 200);
  const starting = await l.call('/NetworkDriver.CreateEndpoint', { ...createEndpoint, EndpointID: EP2 });
  assert.equal(starting.status, 400);
  assert.match(String(starting.json['Err']), refusedTwice);
  execFileSync('touch', [sandbox]);
  // Docker gives the same address to another container while the first one's sandbox exists.
  await sleep(Math.max(0, made + GRACE_MS + 200 - Date.now()));
  const twice = await l.call('/NetworkDriver.CreateEndpoint', { ...createEndpoint, EndpointID: EP2 });
  assert.equal(twice.status, 400);
  assert.match(String(twice.json['Err']), refusedTwice);
  // The container is removed: Docker handed its link back at Leave, its DeleteEndpoint never arrived, the sandbox went.
  rmSync(sandbox);
  const taken = await l.call('/NetworkDriver.CreateEndpoint', { ...createEndpoint, EndpointID: EP3 });
  assert.equal(taken.status, 200, JSON.stringify(taken.json));
  const takenAt = Date.now();
  assert.match(proc.stderr(), /dropped the row of an endpoint Docker forgot/);
  await linkGone(EP_LINK);
  const status = await l.cli(['status', '--state-dir', l.stateDir]);
  assert.doesNotMatch(status.stdout, /endpoint 8caf93c862b2/);
  assert.match(status.stdout, /endpoint acaf93c862b2/);
  assert.equal(
    (await l.call('/NetworkDriver.Join', { NetworkID: NET, EndpointID: EP3, SandboxKey: sandbox })).status,
    200,
  );
  assert.ok(hasLink('lp-acaf93c862b2'), "the new endpoint's link is made with the address's MAC");
  await sleep(Math.max(0, takenAt + GRACE_MS + 200 - Date.now()));
  // Its sandbox file gone but its link in a namespace (a container Docker lost track of): not concluded.
  const elsewhere = `${NS}-fg`;
  execFileSync('ip', ['netns', 'add', elsewhere]);
  try {
    ip('link', 'set', 'lp-acaf93c862b2', 'netns', elsewhere);
    const held = await l.call('/NetworkDriver.CreateEndpoint', { ...createEndpoint, EndpointID: EP2 });
    assert.equal(held.status, 400, 'a link still in a namespace may be in use');
    execFileSync('ip', ['-n', elsewhere, 'link', 'set', 'lp-acaf93c862b2', 'netns', NS]);
  } finally {
    execFileSync('ip', ['netns', 'del', elsewhere]);
  }
  for (const id of [EP3])
    assert.equal((await l.call('/NetworkDriver.DeleteEndpoint', { NetworkID: NET, EndpointID: id })).status, 200);
  assert.equal((await l.call('/NetworkDriver.DeleteNetwork', { NetworkID: NET })).status, 200);
  await stop(proc);
});

test('a delete the kernel refuses: the row goes, a leftover stays, gc finishes once the link can go', async () => {
  const l = freshLab();
  const proc = await l.start();
  await l.call('/NetworkDriver.CreateNetwork', createNetwork());
  await l.call('/NetworkDriver.CreateEndpoint', createEndpoint);
  await l.call('/NetworkDriver.Join', { ...ref, SandboxKey: '/var/run/docker/netns/x' });
  // The endpoint's name now belongs to the namespace's loopback, which the kernel never deletes (EOPNOTSUPP).
  ip('link', 'del', EP_LINK);
  ip('link', 'set', 'lo', 'name', EP_LINK);
  const refused = await l.call('/NetworkDriver.DeleteEndpoint', ref);
  assert.equal(refused.status, 400);
  assert.equal(
    refused.json['Err'],
    `network 5e3ec79625d3 on parent eth0: delete link ${EP_LINK}: EOPNOTSUPP (Operation not supported)`,
  );
  let status = await l.cli(['status', '--state-dir', l.stateDir]);
  assert.doesNotMatch(status.stdout, /endpoint 8caf93c862b2/, 'Docker forgets the endpoint: so does lanplug');
  assert.match(
    status.stdout,
    new RegExp(`leftover endpoint-link ${EP_LINK}: network 5e3ec79625d3 on parent eth0: delete link`),
  );
  ip('link', 'set', EP_LINK, 'name', 'lo');
  const gc = await l.cli(['gc', '--state-dir', l.stateDir, '--docker-host', `${l.dir}/no-dockerd.sock`]);
  assert.equal(gc.code, 0, gc.stderr);
  assert.match(gc.stdout, new RegExp(`^forget-leftover ${EP_LINK}: endpoint link is gone — done$`, 'm'));
  status = await l.cli(['status', '--state-dir', l.stateDir]);
  assert.doesNotMatch(status.stdout, /leftover/);
  await l.call('/NetworkDriver.DeleteNetwork', { NetworkID: NET });
  await stop(proc);
});

test('a parent that is down: the endpoint link is made, the parent stays down', async () => {
  const l = freshLab();
  const proc = await l.start();
  ip('link', 'set', 'eth0', 'down');
  try {
    assert.equal((await l.call('/NetworkDriver.CreateNetwork', createNetwork())).status, 200);
    await l.call('/NetworkDriver.CreateEndpoint', createEndpoint);
    assert.equal((await l.call('/NetworkDriver.Join', { ...ref, SandboxKey: '/var/run/docker/netns/x' })).status, 200);
    assert.equal(hasLink(EP_LINK), true);
    assert.doesNotMatch(
      ip('link', 'show', 'dev', 'eth0'),
      /[<,]UP[,>]/,
      'lanplug never brings up a parent it did not make',
    );
    await l.call('/NetworkDriver.DeleteEndpoint', ref);
    await l.call('/NetworkDriver.DeleteNetwork', { NetworkID: NET });
  } finally {
    ip('link', 'set', 'eth0', 'up');
    await stop(proc);
  }
});

test('a parent that disappears: Join says which in one line; all works again when it is back; removal works throughout', async () => {
  const l = freshLab();
  const proc = await l.start();
  await l.call('/NetworkDriver.CreateNetwork', createNetwork());
  await l.call('/NetworkDriver.CreateEndpoint', createEndpoint);
  ip('link', 'del', 'eth0');
  const join = await l.call('/NetworkDriver.Join', { ...ref, SandboxKey: '/var/run/docker/netns/x' });
  assert.deepEqual(join, {
    status: 400,
    json: { Err: 'network 5e3ec79625d3 on parent eth0: -o parent interface was not found on the host: eth0' },
  });
  ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'lan0');
  ip('link', 'set', 'eth0', 'up');
  assert.equal((await l.call('/NetworkDriver.Join', { ...ref, SandboxKey: '/var/run/docker/netns/x' })).status, 200);
  ip('link', 'del', 'eth0');
  assert.equal(
    (await l.call('/NetworkDriver.DeleteEndpoint', ref)).status,
    200,
    'the link went with its parent: nothing to do',
  );
  assert.equal((await l.call('/NetworkDriver.DeleteNetwork', { NetworkID: NET })).status, 200);
  ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'lan0');
  ip('link', 'set', 'eth0', 'up');
  await stop(proc);
  assert.deepEqual(linkNames(), ['eth0', 'lan0', 'lo']);
});

test("two daemons on one host, each with its own --state-dir, never remove each other's links", async () => {
  const a = freshLab();
  const b = new DaemonLab(NS);
  try {
    const procA = await a.start({}, ['--recheck-interval', '1']);
    const withHostAccess = {
      ...createNetwork(),
      Options: { 'com.docker.network.generic': { parent: 'eth0', host_access: 'true' } },
      IPv4Data: [
        {
          AddressSpace: 'LocalDefault',
          Pool: '172.16.86.0/24',
          Gateway: '172.16.86.1/24',
          AuxAddresses: { host: '172.16.86.250/24' },
        },
      ],
    };
    assert.equal((await a.call('/NetworkDriver.CreateNetwork', withHostAccess)).status, 200);
    assert.equal((await a.call('/NetworkDriver.CreateEndpoint', createEndpoint)).status, 200);
    assert.equal((await a.call('/NetworkDriver.Join', { ...ref, SandboxKey: '/var/run/docker/netns/x' })).status, 200);
    const ofA = linkNames().filter((n) => /^(lp-|lh-|lpe)/.test(n));
    assert.equal(ofA.length, 3, `an endpoint link, a shim and a LAN eye: ${ofA.join(' ')}`);
    // B starts (its reconcile runs before it listens), checks every second, and serves a network of its own.
    const procB = await b.start({}, ['--recheck-interval', '1']);
    const netB = NET.replace(/^5e/, 'b0');
    const epB = EP.replace(/^8c/, 'b1');
    assert.equal((await b.call('/NetworkDriver.CreateNetwork', { ...createNetwork(), NetworkID: netB })).status, 200);
    const endpointB = { ...createEndpoint, NetworkID: netB, EndpointID: epB, Interface: { Address: '172.16.86.3/24' } };
    assert.equal((await b.call('/NetworkDriver.CreateEndpoint', endpointB)).status, 200);
    await new Promise((r) => setTimeout(r, 2_500));
    for (const name of ofA) assert.equal(hasLink(name), true, `${name} of daemon A survives daemon B`);
    const eyes = linkNames().filter((n) => n.startsWith('lpe'));
    assert.equal(eyes.length, 2, `each daemon its own LAN eye: ${eyes.join(' ')}`);
    assert.equal((await b.call('/NetworkDriver.DeleteEndpoint', { NetworkID: netB, EndpointID: epB })).status, 200);
    assert.equal((await b.call('/NetworkDriver.DeleteNetwork', { NetworkID: netB })).status, 200);
    await stop(procB);
    for (const name of ofA) assert.equal(hasLink(name), true, `${name} of daemon A survives B's network removal`);
    assert.equal(linkNames().filter((n) => n.startsWith('lpe')).length, 1, "B's eye went with its network");
    assert.equal((await a.call('/NetworkDriver.DeleteEndpoint', ref)).status, 200);
    assert.equal((await a.call('/NetworkDriver.DeleteNetwork', { NetworkID: NET })).status, 200);
    await stop(procA);
    assert.deepEqual(
      linkNames().filter((n) => /^(lp|lh-)/.test(n)),
      [],
      'each removed what it made',
    );
  } finally {
    b.close();
  }
});

test('a LAN eye lives exactly as long as a network of its daemon needs it: across a kill -9, gone with the network, and one that outlived its network goes within seconds', async () => {
  const l = freshLab();
  let proc = await l.start();
  assert.equal((await l.call('/NetworkDriver.CreateNetwork', createNetwork())).status, 200);
  assert.equal((await l.call('/NetworkDriver.CreateEndpoint', createEndpoint)).status, 200);
  const eyes = (): string[] => linkNames().filter((n) => n.startsWith('lpe'));
  const [eye] = eyes();
  assert.ok(eye !== undefined, 'the conflict check made an eye on eth0');
  const group = groupOf(eye);
  proc.child.kill('SIGKILL');
  await proc.exited;
  proc = await l.start();
  assert.deepEqual(eyes(), [eye], 'kept across a restart: the network still needs it');
  assert.equal((await l.call('/NetworkDriver.DeleteEndpoint', ref)).status, 200);
  assert.equal((await l.call('/NetworkDriver.DeleteNetwork', { NetworkID: NET })).status, 200);
  assert.deepEqual(eyes(), [], 'gone with the last network on its parent');
  // One that outlived its network (a removal that failed, a caller that raced it); the periodic reconcile is off.
  ip('link', 'add', eye, 'group', group, 'link', 'eth0', 'type', 'macvlan', 'mode', 'bridge');
  const deadline = Date.now() + 5_000;
  while (eyes().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(eyes(), [], 'removed within seconds by the daemon that owns it');
  await stop(proc);
});

test("the LAN sync reads this daemon's links only after a link changed (and every 30 s): idle, no read; an eye deleted behind its back and a parent renamed under one are still acted on within seconds", async () => {
  const l = freshLab();
  const proc = await l.start();
  const eyes = (): string[] => linkNames().filter((n) => n.startsWith('lpe'));
  const reads = async (): Promise<number> => {
    const page = await unixHttp(join(l.stateDir, 'control.sock'), 'GET', '/metrics');
    const line = page.body.split('\n').find((s) => s.startsWith('lanplug_lan_sync_dumps_total '));
    assert.ok(line !== undefined, 'the daemon counts the link reads of its LAN sync');
    return Number(line.split(' ').pop());
  };
  const until = async (what: string, done: () => boolean): Promise<void> => {
    // The sync runs every 2 s: what it notices is done by the next one (5 s: a loaded machine's timers lag).
    const deadline = Date.now() + 5_000;
    while (!done()) {
      assert.ok(Date.now() < deadline, `${what}: not within 5 s`);
      await sleep(100);
    }
  };
  try {
    assert.equal((await l.call('/NetworkDriver.CreateNetwork', createNetwork())).status, 200);
    await until('the sync makes the network its eye', () => eyes().length === 1);
    const [eye] = eyes();
    await sleep(2_500); // the read that follows the eye's own making
    const idleFrom = await reads();
    await sleep(5_000);
    const idle = (await reads()) - idleFrom;
    // Two or three syncs in 5 s, each of which read the links before; one may be the 30 s safety read.
    assert.ok(idle <= 1, `${idle} link reads in 5 s with no link changed`);

    const beforeDelete = await reads();
    ip('link', 'del', String(eye));
    await until('an eye deleted behind its back made again', () => eyes().length === 1);
    assert.ok((await reads()) > beforeDelete, 'the deletion made the sync read the links');

    // Only the read finds an eye whose parent no network names any more: its parent renamed.
    ip('link', 'set', 'eth0', 'down');
    ip('link', 'set', 'eth0', 'name', 'eth0x');
    await until("the eye of a renamed parent removed (no network's parent now)", () => eyes().length === 0);
    ip('link', 'set', 'eth0x', 'name', 'eth0');
    ip('link', 'set', 'eth0', 'up');
    await until('the eye made again once the parent is back', () => eyes().length === 1);
    assert.equal((await l.call('/NetworkDriver.DeleteNetwork', { NetworkID: NET })).status, 200);
  } finally {
    if (hasLink('eth0x')) ip('link', 'set', 'eth0x', 'name', 'eth0');
    ip('link', 'set', 'eth0', 'up');
    await stop(proc);
  }
});

test('a daemon on a copy of a running daemon’s state directory is refused in one line: it would take the other’s links for its own', async () => {
  const l = freshLab();
  const proc = await l.start();
  assert.equal((await l.call('/NetworkDriver.CreateNetwork', createNetwork())).status, 200);
  const copy = new DaemonLab(NS);
  try {
    execFileSync('cp', ['-a', l.stateDir, copy.stateDir]);
    rmSync(join(copy.stateDir, 'lanplug.lock'), { force: true });
    await assert.rejects(
      copy.start(),
      /another lanplug on this host acts for link group \d+, the group of \S+: it runs on a copy of this state directory; give each lanplug daemon a state directory of its own/,
    );
  } finally {
    copy.close();
  }
  assert.equal((await l.call('/NetworkDriver.DeleteNetwork', { NetworkID: NET })).status, 200);
  await stop(proc);
});

test('a periodic pass that outlasts --recheck-interval (dockerd slow to answer): ticks are skipped while it runs, so lanplug gc waits for the running pass only', async () => {
  const l = freshLab();
  // The dockerd the daemon asks which rows it forgot: every answer takes 2 s, so every pass does.
  let asked = 0;
  const dockerd = createHttpServer((_req, res) => {
    asked++;
    setTimeout(() => res.end(JSON.stringify({ ID: 'SLOW:ENGINE' })), 2_000);
  });
  await new Promise<void>((resolve) => dockerd.listen(`${l.dir}/no-dockerd.sock`, resolve));
  try {
    const proc = await l.start({}, ['--recheck-interval', '1']);
    await new Promise((r) => setTimeout(r, 12_000));
    const started = Date.now();
    const gc = await l.cli(['gc', '--state-dir', l.stateDir, '--docker-host', `${l.dir}/no-dockerd.sock`]);
    const tookMs = Date.now() - started;
    assert.equal(gc.code, 0, gc.stderr);
    // The pass under way (2 s at most), then gc's own (2 s), and the CLI's start: not a queue of 1 s ticks.
    assert.ok(tookMs < 7_000, `lanplug gc answered after ${tookMs} ms (dockerd asked ${asked} times)`);
    await stop(proc);
  } finally {
    dockerd.closeAllConnections();
    dockerd.close();
  }
});

/** Runs `mount`, `umount`, `losetup` and the like: this file's root lane may, on what it made under its lab's directory. */
function sh(command: string, ...args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

test('a state directory whose file system has no inode (or no space) left: doctor says so in one line, and the daemon refuses to start in one line saying what to free', async () => {
  const l = freshLab();
  mkdirSync(l.stateDir, { mode: 0o700 });
  sh('mount', '-t', 'tmpfs', '-o', 'size=4m,nr_inodes=64,mode=0700', 'lanplug-inodes', l.stateDir);
  try {
    const proc = await l.start();
    assert.equal((await l.call('/NetworkDriver.CreateNetwork', createNetwork())).status, 200);
    // A clean stop removes the database's -wal and -shm files: the next start makes them again.
    await stop(proc);
    // Something else in that file system took every inode left (empty files: the space is still there).
    for (let i = 0; ; i++) {
      try {
        writeFileSync(join(l.stateDir, `f${i}`), '');
      } catch (err) {
        assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
        break;
      }
    }
    const doctor = await l.cli([
      'doctor',
      '--json',
      '--state-dir',
      l.stateDir,
      '--plugin-dir',
      l.pluginDir,
      '--docker-host',
      `unix://${l.dir}/no-dockerd.sock`,
    ]);
    const stateLines = (JSON.parse(doctor.stdout) as { check: string; status: string; detail: string; fix?: string }[])
      .filter((c) => c.check === 'state directory')
      .map((c) => `${c.status}: ${c.detail} — fix: ${c.fix ?? ''}`);
    assert.deepEqual(stateLines, [
      `fail: ${l.stateDir}: its file system has 0 free inodes; the daemon cannot open its database at its next start (SQLite makes its -wal and -shm files there) until there are more — fix: remove files on it (df -i ${l.stateDir})`,
    ]);
    const refused = spawnDaemon(
      NS,
      ['daemon', '--state-dir', l.stateDir, '--plugin-dir', l.pluginDir, '--recheck-interval', '0'],
      `${l.dir}/no-inodes.log`,
    );
    assert.equal((await refused.exited).code, 1);
    assert.equal(
      refused.stderr().trim().split('\n').pop(),
      `lanplug: ${l.stateDir}/lanplug.db cannot be opened (unable to open database file): its file system has no free inode left, and SQLite makes its -wal and -shm files beside it; remove files there to free some (df -i ${l.stateDir}), then try again`,
    );
    // Inodes freed, but no space left: the same, in words for space.
    for (const i of [0, 1, 2, 3, 4, 5, 6, 7]) rmSync(join(l.stateDir, `f${i}`));
    try {
      sh('dd', 'if=/dev/zero', `of=${join(l.stateDir, 'filler')}`, 'bs=4k');
    } catch {
      // dd stops at "No space left on device".
    }
    const full = spawnDaemon(
      NS,
      ['daemon', '--state-dir', l.stateDir, '--plugin-dir', l.pluginDir, '--recheck-interval', '0'],
      `${l.dir}/no-space.log`,
    );
    assert.equal((await full.exited).code, 1);
    assert.equal(
      full.stderr().trim().split('\n').pop(),
      `lanplug: ${l.stateDir}/lanplug.db cannot be opened (disk I/O error): its file system is full, and SQLite makes its -wal and -shm files beside it; free space there (df ${l.stateDir}), then try again`,
    );
    // Room again: it starts, with the network it had.
    rmSync(join(l.stateDir, 'filler'));
    const again = await l.start();
    assert.match((await l.cli(['status', '--state-dir', l.stateDir])).stdout, new RegExp(NET.slice(0, 12)));
    assert.equal((await l.call('/NetworkDriver.DeleteNetwork', { NetworkID: NET })).status, 200);
    await stop(again);
  } finally {
    sh('umount', l.stateDir);
  }
});

test('a write whose fsync fails after SQLite committed it (a failing disk under the state directory): the answer agrees with the database, and one error line says the disk did not confirm it', async (t) => {
  const l = freshLab();
  // A thin-provisioned disk: an ext2 file system of 64 MB on a loop device whose backing file lives in a
  // tmpfs of 8 MB. Once that tmpfs is full, every block not written before fails as the kernel writes it
  // back (the fsync's error: ENOSPC here, EIO on a dying disk; the same path for SQLite and lanplug).
  const backing = join(l.dir, 'backing');
  mkdirSync(backing);
  mkdirSync(l.stateDir, { mode: 0o700 });
  sh('mount', '-t', 'tmpfs', '-o', 'size=8m', 'lanplug-thin', backing);
  let loop: string | null = null;
  let mounted = false;
  let proc: Awaited<ReturnType<DaemonLab['start']>> | null = null;
  try {
    sh('truncate', '-s', '64M', join(backing, 'disk.img'));
    sh('mkfs.ext2', '-q', '-b', '4096', '-E', 'lazy_itable_init=0', join(backing, 'disk.img'));
    loop = sh('losetup', '-f', '--show', join(backing, 'disk.img')).trim();
    sh('mount', '-o', 'errors=continue', loop, l.stateDir);
    mounted = true;
    sh('chmod', '0700', l.stateDir);
    proc = await l.start();
    try {
      sh('dd', 'if=/dev/zero', `of=${join(backing, 'fill')}`, 'bs=4k');
    } catch {
      // dd stops at "No space left on device": the backing store is full.
    }
    const unconfirmed = () =>
      proc?.stderr().match(/"msg":"the state directory's disk did not confirm a write/g)?.length ?? 0;
    const recorded = () =>
      sh(
        'sqlite3',
        '-readonly',
        join(l.stateDir, 'lanplug.db'),
        `SELECT count(*) FROM networks WHERE id = '${NET}'`,
      ).trim() === '1';
    // Each create and delete records the network durably (an fsync after the commit); the first few may still
    // land on blocks written before. Every answer must say what the database says.
    const answers: string[] = [];
    for (let round = 0; round < 10 && unconfirmed() === 0; round++) {
      const created = await l.call('/NetworkDriver.CreateNetwork', createNetwork());
      answers.push(`create ${created.status}${created.status === 200 ? '' : ` ${String(created.json['Err'])}`}`);
      assert.equal(created.status === 200, recorded(), `the answers (${answers.join('; ')}) against the database`);
      const deleted = await l.call('/NetworkDriver.DeleteNetwork', { NetworkID: NET });
      answers.push(`delete ${deleted.status}${deleted.status === 200 ? '' : ` ${String(deleted.json['Err'])}`}`);
      assert.equal(deleted.status === 200, !recorded(), `the answers (${answers.join('; ')}) against the database`);
    }
    assert.ok(unconfirmed() > 0, `no fsync failed (answers: ${answers.join('; ')})`);
    t.diagnostic(`answers until an fsync failed: ${answers.join('; ')}`);
    assert.match(
      proc.stderr(),
      /"level":"error","msg":"the state directory's disk did not confirm a write: lanplug keeps it \(the database has it\) and answered as done, but a power loss may take it; check the disk \(dmesg\)","path":"[^"]+lanplug\.db","error":"(ENOSPC|EIO)[^"]*fsync"/,
    );
    await stop(proc);
  } finally {
    if (proc !== null && proc.child.exitCode === null && proc.child.signalCode === null) {
      proc.child.kill('SIGKILL');
      await proc.exited;
    }
    if (mounted) sh('umount', l.stateDir);
    if (loop !== null) sh('losetup', '-d', loop);
    sh('umount', backing);
  }
});
