/**
 * Ready for a real Docker host, with a real dockerd: bursts of concurrent
 * `docker run` and `docker rm -f`, the daemon killed (-9) in the middle of
 * each, rows Docker forgot while lanplug was down, and `lanplug doctor` on a
 * healthy and a broken host.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createDockerHost } from '../lab/docker-host';
import { BUSYBOX } from '../lab/image';
import { startLanplug } from '../lab/lanplug';
import { repoRoot } from '../support/repo';
import {
  assertNoLanplugLinks,
  containerNetwork,
  eventually,
  lanplugStatus,
  lines,
  removeNetworkAfterBurst,
  useLab,
} from './helpers';

const lab = useLab({ addresses: ['172.16.86.1/24'], resetEachTest: true });
const BURST = 50;

function dockerAsync(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return lab.host.dockerAsync(args);
}

function lanplugCli(args: string[]): { code: number; stdout: string } {
  const argv = [process.execPath, join(repoRoot(), 'bin', 'lanplug'), ...args];
  const r = lab.host.exec(argv);
  return { code: r.status ?? -1, stdout: r.stdout + r.stderr };
}

function network(name: string, extra: string[] = []): void {
  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet=172.16.86.0/24',
    '--gateway=172.16.86.1',
    '-o',
    'parent=eth0',
    ...extra,
    name,
  ]);
}

function runningOn(net: string): string[] {
  return lines(lab.host.dockerOk(['ps', '--filter', `network=${net}`, '--format', '{{.Names}}'])).sort();
}

/** Every running container on `net` has its address and MAC and reaches the gateway. */
function assertAllConnected(net: string): void {
  const names = runningOn(net);
  const macs = new Set<string>();
  const addresses = new Set<string>();
  for (const name of names) {
    const settings = containerNetwork(lab.host, name, net);
    macs.add(settings.MacAddress);
    addresses.add(settings.IPAddress);
    lab.host.dockerOk(['exec', name, 'ping', '-c', '1', '-W', '2', '172.16.86.1']);
  }
  assert.equal(macs.size, names.length, 'distinct MACs');
  assert.equal(addresses.size, names.length, 'distinct addresses');
}

test(`${BURST} concurrent docker run all succeed with distinct MACs and addresses and reach the gateway; ${BURST} concurrent rm -f leave nothing`, async () => {
  const since = Date.now();
  network('burst');
  const runs = await Promise.all(
    Array.from({ length: BURST }, (_, i) =>
      dockerAsync(['run', '-d', '--network', 'burst', '--name', `b${i}`, 'alpine:latest', 'sleep', '3600']),
    ),
  );
  assert.deepEqual(
    runs.filter((r) => r.code !== 0).map((r) => r.stderr.trim()),
    [],
  );
  assert.equal(runningOn('burst').length, BURST);
  assertAllConnected('burst');
  const removes = await Promise.all(Array.from({ length: BURST }, (_, i) => dockerAsync(['rm', '-f', `b${i}`])));
  assert.deepEqual(
    removes.filter((r) => r.code !== 0).map((r) => r.stderr.trim()),
    [],
  );
  await removeNetworkAfterBurst(lab.host, lab.plugin, 'burst', { ms: 15_000, since });
  // Every one of the 200 driver calls was answered without an error.
  assert.deepEqual(
    lines(lab.plugin.stderr()).filter((l) => l.includes('request failed')),
    [],
  );
  assertNoLanplugLinks(lab.host);
  assert.equal(lanplugStatus(lab.plugin), 'no lanplug networks');
});

test('kill -9 of the daemon in the middle of a burst of runs and of removals: running containers keep their network, new ones start, nothing leaks', async () => {
  const since = Date.now();
  network('crashy');
  const stateDir = lab.plugin.stateDir;
  const crash = async (): Promise<void> => {
    process.kill(lab.plugin.pid, 'SIGKILL');
    await lab.plugin.stop();
    lab.plugin = await startLanplug(lab.host, { stateDir });
  };
  const runs = Promise.all(
    Array.from({ length: BURST }, (_, i) =>
      dockerAsync(['run', '-d', '--network', 'crashy', '--name', `k${i}`, 'alpine:latest', 'sleep', '3600']),
    ),
  );
  await new Promise((r) => setTimeout(r, 1500));
  await crash();
  const results = await runs;
  const started = results.filter((r) => r.code === 0).length;
  assert.ok(started > 0, 'some runs got through');
  // A run that failed because the plugin died leaves a created container behind: Docker's, not ours.
  assertAllConnected('crashy');
  lab.host.dockerOk(['run', '-d', '--network', 'crashy', '--name', 'fresh', 'alpine:latest', 'sleep', '3600']);
  assertAllConnected('crashy');

  const names = lines(lab.host.dockerOk(['ps', '-a', '--format', '{{.Names}}']));
  const removes = Promise.all(names.map((n) => dockerAsync(['rm', '-f', n])));
  await new Promise((r) => setTimeout(r, 1000));
  await crash();
  await removes;
  const left = lines(lab.host.dockerOk(['ps', '-aq']));
  if (left.length > 0) lab.host.dockerOk(['rm', '-f', ...left]);
  // dockerd retries for 30 s a call the killed daemon did not answer; an endpoint it still counts after
  // that is dropped as a user would (see removeNetworkAfterBurst), and counted in the line below.
  const stale = await removeNetworkAfterBurst(lab.host, lab.plugin, 'crashy', {
    ms: 30_000,
    since,
    pluginCallsMayFail: true,
  });
  // What Docker told a dead daemon is caught up by gc: every link and row is gone.
  const gc = lanplugCli([
    'gc',
    '--state-dir',
    stateDir,
    '--docker-host',
    `unix://${lab.host.sock}`,
    '--grace-seconds',
    '0',
  ]);
  assert.equal(gc.code, 0, gc.stdout);
  assertNoLanplugLinks(lab.host);
  assert.equal(lanplugStatus(lab.plugin), 'no lanplug networks');
  process.stderr.write(
    `# burst with kill -9: ${started}/${BURST} runs got through; ${stale.length} endpoint(s) dockerd kept disconnected with -f\n`,
  );
});

test('an endpoint Docker forgot while lanplug was down no longer blocks a passthru parent once gc has run', async () => {
  network('pt', ['-o', 'macvlan_mode=passthru']);
  lab.host.dockerOk(['run', '-d', '--network', 'pt', '--name', 'first', 'alpine:latest', 'sleep', '3600']);
  process.kill(lab.plugin.pid, 'SIGKILL');
  await lab.plugin.stop();
  // Docker calls a plugin that is not there, logs the failure, and forgets the endpoint anyway.
  lab.host.docker(['rm', '-f', 'first'], { timeoutMs: 120_000 });
  lab.plugin = await startLanplug(lab.host, { stateDir: lab.plugin.stateDir });
  const refused = lab.host.docker([
    'run',
    '-d',
    '--network',
    'pt',
    '--name',
    'second',
    'alpine:latest',
    'sleep',
    '3600',
  ]);
  assert.notEqual(refused.status, 0);
  assert.match(refused.stderr, /passthru allows one container per parent/);
  lab.host.docker(['rm', '-f', 'second']);
  const gc = lanplugCli([
    'gc',
    '--state-dir',
    lab.plugin.stateDir,
    '--docker-host',
    `unix://${lab.host.sock}`,
    '--grace-seconds',
    '0',
  ]);
  assert.equal(gc.code, 0, gc.stdout);
  assert.match(gc.stdout, /^dropped endpoint [0-9a-f]{12}: Docker no longer knows it$/m);
  lab.host.dockerOk(['run', '-d', '--network', 'pt', '--name', 'second', 'alpine:latest', 'sleep', '3600']);
  lab.host.dockerOk(['exec', 'second', 'ping', '-c', '1', '-W', '2', '172.16.86.1']);
});

test('a parent that is down: the container still starts, without carrier until the parent comes up; lanplug never brings it up [engine:parent-down]', async () => {
  network('down');
  lab.host.execOk(['ip', 'link', 'set', 'eth0', 'down']);
  try {
    lab.host.dockerOk(['run', '-d', '--network', 'down', '--name', 'd1', 'alpine:latest', 'sleep', '3600']);
    assert.equal(containerNetwork(lab.host, 'd1', 'down').IPAddress, '172.16.86.2');
    assert.notEqual(
      lab.host.docker(['exec', 'd1', 'ping', '-c', '1', '-W', '1', '172.16.86.1']).status,
      0,
      'no carrier while the parent is down',
    );
    assert.doesNotMatch(lab.host.execOk(['ip', 'link', 'show', 'eth0']), /[<,]UP[,>]/, 'eth0 is still down');
  } finally {
    lab.host.execOk(['ip', 'link', 'set', 'eth0', 'up']);
  }
  await eventually(() => lab.host.dockerOk(['exec', 'd1', 'ping', '-c', '1', '-W', '2', '172.16.86.1']), 15_000);
});

test('lanplug doctor: every check passes on a healthy host; a broken one is named with its fix and exits 1', async () => {
  network('doc');
  lab.host.dockerOk(['run', '-d', '--network', 'doc', '--name', 'doc1', 'alpine:latest', 'sleep', '3600']);
  const flags = [
    '--state-dir',
    lab.plugin.stateDir,
    '--plugin-dir',
    '/run/docker/plugins',
    '--docker-host',
    `unix://${lab.host.sock}`,
  ];
  const healthy = lanplugCli(['doctor', ...flags]);
  assert.equal(healthy.code, 0, healthy.stdout);
  assert.match(healthy.stdout, /^✔ kernel: macvlan: modes bridge, vepa, private, passthru$/m);
  assert.match(healthy.stdout, /^✔ dockerd: dockerd 20\.10\.\d+\S* answers at /m);
  assert.match(healthy.stdout, /^✔ socket lanplug-macvlan: \/run\/docker\/plugins\/lanplug-macvlan\.sock answers$/m);
  assert.match(healthy.stdout, /^✔ daemon: running \(pid \d+\)$/m);
  assert.match(healthy.stdout, /^✔ kernel vs store: \d+ links agree with the store$/m);
  assert.doesNotMatch(healthy.stdout, /^✘/m);

  // Broken: the daemon is gone (its sockets with it), and a link of its own (its group: the LAN eye's) that no
  // endpoint owns lies around, as a crash between making it and answering Docker leaves it.
  const links = JSON.parse(lab.host.execOk(['ip', '-j', 'link', 'show'])) as { ifname: string; group: string }[];
  const group = links.find((l) => l.ifname.startsWith('lpe'))?.group ?? '?';
  await lab.plugin.stop();
  lab.host.execOk(['ip', 'link', 'add', 'lp-0a0b0c0d0e0f', 'group', group, 'link', 'eth0', 'type', 'macvlan']);
  const broken = lanplugCli(['doctor', ...flags]);
  assert.equal(broken.code, 1);
  assert.match(
    broken.stdout,
    /^✘ socket lanplug-macvlan: \/run\/docker\/plugins\/lanplug-macvlan\.sock does not exist: Docker cannot find the lanplug-macvlan driver — fix: lanplug install \(or: lanplug daemon\)$/m,
  );
  assert.match(
    broken.stdout,
    /^✘ daemon: no lanplug daemon holds .* — fix: systemctl start lanplug \(or: lanplug daemon\)$/m,
  );
  assert.match(
    broken.stdout,
    /^✘ kernel vs store: delete-link lp-0a0b0c0d0e0f: endpoint link no endpoint owns .* — fix: lanplug gc$/m,
  );
  const json = JSON.parse(lanplugCli(['doctor', '--json', ...flags]).stdout) as { check: string; status: string }[];
  assert.ok(json.some((c) => c.check === 'daemon' && c.status === 'fail'));
  lab.plugin = await startLanplug(lab.host, { stateDir: lab.plugin.stateDir });
  assert.equal(
    lab.host.exec(['ip', 'link', 'show', 'lp-0a0b0c0d0e0f']).status === 0,
    false,
    'the restarted daemon reconciled it away',
  );
  assert.equal(lanplugCli(['doctor', ...flags]).code, 0);
});

test("asking another dockerd drops nothing, by gc or by the daemon's periodic check: its 'no such network' is not the word of the dockerd the networks came from (until gc --accept-engine says Docker was reinstalled)", async () => {
  network('mine', ['--aux-address=host=172.16.86.250', '-o', 'host_access=true']);
  lab.host.dockerOk(['run', '-d', '--network', 'mine', '--name', 'kept', 'alpine:latest', 'sleep', '3600']);
  const address = containerNetwork(lab.host, 'kept', 'mine').IPAddress;
  const gc = (dockerHost: string): { code: number; stdout: string } =>
    lanplugCli(['gc', '--state-dir', lab.plugin.stateDir, '--docker-host', dockerHost, '--grace-seconds', '0']);
  // The right dockerd first: it knows the network, which lanplug now remembers it came from.
  assert.doesNotMatch(gc(`unix://${lab.host.sock}`).stdout, /dropped/);
  const other = await createDockerHost(lab.lan, { image: false });
  const keptLine =
    /^kept 1 network\(s\) dockerd \S+ does not know: they came from engine \S+; is --docker-host lanplug's dockerd\? \(if Docker was reinstalled and these networks are gone with it: lanplug gc --accept-engine\)$/m;
  try {
    // With the daemon stopped, gc decides itself.
    await lab.plugin.stop();
    const offline = gc(`unix://${other.sock}`);
    assert.equal(offline.code, 0, offline.stdout);
    assert.doesNotMatch(offline.stdout, /dropped network/);
    assert.match(offline.stdout, keptLine);
    // A daemon pointed at the other dockerd, checking every second with no grace.
    lab.plugin = await startLanplug(lab.host, {
      stateDir: lab.plugin.stateDir,
      args: ['--docker-host', `unix://${other.sock}`, '--recheck-interval', '1', '--grace-seconds', '0'],
    });
    await eventually(() => assert.match(lab.plugin.stderr(), /did not come from it: kept/), 10_000);
    assert.doesNotMatch(lab.plugin.stderr(), /dropping a network Docker has forgotten/);
    await lab.plugin.stop();
    lab.plugin = await startLanplug(lab.host, { stateDir: lab.plugin.stateDir });
    assert.match(lanplugStatus(lab.plugin), /^ {2}endpoint [0-9a-f]{12} /m);
    // The container and the host's shim still work: the host reaches the container.
    lab.host.execOk([BUSYBOX, 'ping', '-c', '1', '-W', '2', address]);
    // Docker reinstalled (a new engine, the networks gone with the old one): the operator says so.
    await lab.plugin.stop();
    const accepted = lanplugCli([
      'gc',
      '--state-dir',
      lab.plugin.stateDir,
      '--docker-host',
      `unix://${other.sock}`,
      '--grace-seconds',
      '0',
      '--accept-engine',
    ]);
    assert.equal(accepted.code, 0, accepted.stdout);
    assert.match(accepted.stdout, /^dropped network [0-9a-f]{12}: Docker no longer knows it$/m);
  } finally {
    other.destroy();
    await lab.plugin.stop();
    lab.plugin = await startLanplug(lab.host, { stateDir: lab.plugin.stateDir });
  }
  assert.equal(lanplugStatus(lab.plugin), 'no lanplug networks');
});
