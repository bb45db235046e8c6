/**
 * Hostile input at the socket: a seeded, time-bounded fuzz run sends at least
 * 10,000 generated and mutated bodies to every method of both drivers of a
 * real daemon (real kernel, throw-away namespace), then checks that the
 * daemon lives, answers a normal request, and — once the networks the run
 * happened to create are removed — left no link and no row behind.
 *
 * LANPLUG_FUZZ_SEED replays a run; the seed is printed either way.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { SqliteStore } from '../../src/state/sqlite';
import { DaemonLab } from '../support/daemon';

const NS = `lp-k-${randomBytes(4).toString('hex')}`;
const MIN_BODIES = 10_000;
const TIME_LIMIT_MS = 120_000;
const SEED = Number(process.env['LANPLUG_FUZZ_SEED'] ?? 0x5eed1a2b);

const METHODS = [
  '/Plugin.Activate',
  '/NetworkDriver.GetCapabilities',
  '/NetworkDriver.CreateNetwork',
  '/NetworkDriver.DeleteNetwork',
  '/NetworkDriver.CreateEndpoint',
  '/NetworkDriver.DeleteEndpoint',
  '/NetworkDriver.EndpointOperInfo',
  '/NetworkDriver.Join',
  '/NetworkDriver.Leave',
  '/NetworkDriver.DiscoverNew',
  '/NetworkDriver.DiscoverDelete',
  '/NetworkDriver.ProgramExternalConnectivity',
  '/NetworkDriver.RevokeExternalConnectivity',
  '/NetworkDriver.AllocateNetwork',
  '/NetworkDriver.FreeNetwork',
  '/NetworkDriver.Nope',
  '/../../etc/passwd',
] as const;

/** A few real ids, so that some generated requests reach deep into the driver; the rest are noise. */
const NETWORK_IDS = ['f'.repeat(64), 'e1'.repeat(32), 'abcdefabcdef'];
const ENDPOINT_IDS = ['1'.repeat(64), '2'.repeat(64), '3f'.repeat(32)];

/** mulberry32: small, seedable, good enough to pick cases. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let lab: DaemonLab;
before(() => {
  execFileSync('ip', ['netns', 'add', NS]);
  execFileSync('ip', ['-n', NS, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'lan0']);
  execFileSync('ip', ['-n', NS, 'link', 'set', 'eth0', 'up']);
  lab = new DaemonLab(NS);
});
after(() => {
  lab?.close();
  execFileSync('ip', ['netns', 'del', NS]);
});

test(
  `fuzz: at least ${MIN_BODIES} hostile bodies to every method of both drivers; the daemon lives and leaks nothing`,
  { timeout: TIME_LIMIT_MS + 60_000 },
  async (t) => {
    const proc = await lab.start();
    const random = prng(SEED);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
    const strings = (): string =>
      pick([
        '',
        'eth0',
        'eth0.50',
        'lo',
        '../../etc',
        'a'.repeat(4096),
        'x\u0000y',
        '\u0000',
        'eth0\n',
        '🙂'.repeat(20),
        '__proto__',
        'constructor',
        '172.16.86.2/24',
        '172.16.86.1',
        '2001:db8::2/64',
        '300.1.1.1/24',
        '02:42:ac:10:56:02',
        '01:00:5e:00:00:01',
        'bridge',
        'passthru',
        'l3',
        '9000',
        '-1',
        pick(NETWORK_IDS),
        pick(ENDPOINT_IDS),
      ]);
    const value = (depth: number): unknown => {
      const r = random();
      if (depth > 3 || r < 0.45) return strings();
      if (r < 0.55) return pick([0, -1, 1.5, 1e308, 65536, true, false, null]);
      if (r < 0.7) return Array.from({ length: Math.floor(random() * 4) }, () => value(depth + 1));
      const o: Record<string, unknown> = {};
      for (let i = Math.floor(random() * 5); i > 0; i--)
        o[
          pick([
            'parent',
            'macvlan_mode',
            'ipvlan_mode',
            'com.docker.network.driver.mtu',
            '__proto__',
            'Pool',
            'Gateway',
            strings(),
          ])
        ] = value(depth + 1);
      return o;
    };
    const shaped = (): Record<string, unknown> => ({
      NetworkID: random() < 0.8 ? pick(NETWORK_IDS) : value(2),
      EndpointID: random() < 0.8 ? pick(ENDPOINT_IDS) : value(2),
      Options:
        random() < 0.6
          ? {
              'com.docker.network.generic': {
                parent: pick(['eth0', 'eth0.7', '', 'nosuch', strings()]),
                ...(random() < 0.3 ? { macvlan_mode: strings() } : {}),
              },
            }
          : value(1),
      IPv4Data:
        random() < 0.7
          ? [
              {
                AddressSpace: 'LocalDefault',
                Pool: pick(['172.16.86.0/24', strings()]),
                Gateway: pick(['172.16.86.1/24', strings()]),
              },
            ]
          : value(1),
      IPv6Data: random() < 0.8 ? [] : value(1),
      Interface:
        random() < 0.7
          ? { Address: pick(['172.16.86.2/24', '172.16.86.3/24', strings()]), MacAddress: pick(['', strings()]) }
          : value(1),
      SandboxKey: strings(),
    });
    /** Bodies exactly as dockerd sends them, so that runs of the fuzz reach Join and the teardowns. */
    const valid = (): Record<string, unknown> => ({
      NetworkID: pick(NETWORK_IDS.slice(0, 2)),
      EndpointID: pick(ENDPOINT_IDS),
      Options: {
        'com.docker.network.generic': pick([{ parent: 'eth0' }, {}, { parent: 'eth0', macvlan_mode: 'private' }]),
      },
      IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '172.16.86.0/24', Gateway: '172.16.86.1/24' }],
      IPv6Data: [],
      Interface: { Address: pick(['172.16.86.2/24', '172.16.86.3/24', '172.16.86.4/24']), MacAddress: '' },
      SandboxKey: '/var/run/docker/netns/fuzz',
    });
    const mutate = (text: string): string => {
      const bytes = Buffer.from(text);
      switch (Math.floor(random() * 5)) {
        case 0:
          return bytes.subarray(0, Math.floor(random() * bytes.length)).toString('latin1');
        case 1:
          for (let i = 0; i < 3 && bytes.length > 0; i++)
            bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
          return bytes.toString('latin1');
        case 2:
          return text + text;
        case 3:
          return JSON.stringify(value(0));
        default:
          return pick([
            '',
            'null',
            '[]',
            '"x"',
            '{',
            '{}}',
            '\u0000',
            '{"__proto__":{"polluted":true}}',
            '{"NetworkID":{"toString":"x"}}',
          ]);
      }
    };

    const started = Date.now();
    let sent = 0;
    const statuses = new Map<number, number>();
    const perMethod = new Map<string, number>();
    while (sent < MIN_BODIES * 1.2 && Date.now() - started < TIME_LIMIT_MS) {
      const method = pick(METHODS);
      const driver = random() < 0.5 ? 'macvlan' : 'ipvlan';
      const r = random();
      const shapedText = JSON.stringify(r < 0.3 ? valid() : shaped());
      const body = r < 0.65 ? shapedText : mutate(shapedText);
      const answer = await lab.call(method, body, driver);
      sent++;
      perMethod.set(method, (perMethod.get(method) ?? 0) + 1);
      statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
      if (answer.status !== 200) {
        const field = answer.json['Err'];
        assert.equal(typeof field, 'string', `${method} answered ${answer.status} without an Err string`);
        assert.doesNotMatch(String(field), /[\r\n]/, 'one line');
      }
      assert.notEqual(
        answer.status,
        500,
        `${method} hit an internal error with ${body.slice(0, 200)}: ${String(answer.json['Err'])}`,
      );
    }
    t.diagnostic(
      `seed ${SEED}: ${sent} bodies in ${Date.now() - started} ms; statuses ${JSON.stringify(Object.fromEntries(statuses))}`,
    );
    assert.ok(sent >= MIN_BODIES, `only ${sent} bodies within ${TIME_LIMIT_MS} ms`);
    for (const method of METHODS)
      assert.ok((perMethod.get(method) ?? 0) > 100, `${method} got ${perMethod.get(method) ?? 0} bodies`);

    // Alive, and still serving a normal request.
    assert.equal(proc.child.exitCode, null, 'the daemon is alive');
    assert.deepEqual((await lab.call('/Plugin.Activate', {})).json, { Implements: ['NetworkDriver'] });
    // Remove what the run created (mutated ids included), as Docker would; then nothing of lanplug's is left.
    const store = SqliteStore.openReadOnly(lab.stateDir);
    const created = store.listNetworks().map((n) => ({
      id: n.spec.networkId,
      driver: n.spec.mode.kind,
      endpoints: store.listEndpoints(n.spec.networkId).map((e) => e.endpointId),
    }));
    store.close();
    t.diagnostic(
      `the run created ${created.length} networks and ${created.reduce((n, c) => n + c.endpoints.length, 0)} endpoints`,
    );
    for (const network of created) {
      for (const endpointId of network.endpoints) {
        assert.equal(
          (
            await lab.call(
              '/NetworkDriver.DeleteEndpoint',
              { NetworkID: network.id, EndpointID: endpointId },
              network.driver,
            )
          ).status,
          200,
        );
      }
      assert.equal(
        (await lab.call('/NetworkDriver.DeleteNetwork', { NetworkID: network.id }, network.driver)).status,
        200,
      );
    }
    const links = execFileSync('ip', ['-n', NS, '-o', 'link', 'show'], { encoding: 'utf8' });
    assert.deepEqual(
      links.split('\n').filter((l) => /^\d+: (lp-|lpp-|dm-)/.test(l)),
      [],
      'no link left',
    );
    const status = await lab.cli(['status', '--state-dir', lab.stateDir]);
    assert.equal(status.stdout, 'no lanplug networks\n', 'no row and no leftover left');
    proc.child.kill('SIGTERM');
    assert.equal((await proc.exited).code, 0);
  },
);
