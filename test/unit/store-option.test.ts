/** `lanplug daemon --store`: the forms it takes, and one clear line for each mistake. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseStoreChoice, type StoreFlags } from '../../src/state/etcd/store-option';

const flags = (over: Partial<StoreFlags>): StoreFlags => ({
  store: 'sqlite',
  hostId: '',
  cacert: '',
  cert: '',
  key: '',
  user: '',
  reclaimAfter: 600,
  ...over,
});

test('sqlite by default; etcd members with the default port added, a host id, the reclaim delay in ms', () => {
  assert.deepEqual(parseStoreChoice(flags({})), { kind: 'sqlite' });
  const etcd = parseStoreChoice(
    flags({ store: 'etcd://10.0.0.5:2379,etcd-b,[fd00::7]:2380', hostId: 'rack1-a', user: 'lp:s3:cret' }),
  );
  assert.deepEqual(etcd, {
    kind: 'etcd',
    hostId: 'rack1-a',
    reclaimAfterMs: 600_000,
    etcd: {
      endpoints: ['http://10.0.0.5:2379', 'http://etcd-b:2379', 'http://[fd00::7]:2380'],
      user: { name: 'lp', password: 's3:cret' },
      tls: null,
    },
  });
});

test('each mistake is one line naming the flag', () => {
  const refusal = (over: Partial<StoreFlags>): string => {
    try {
      parseStoreChoice(flags(over));
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
    return assert.fail('expected a refusal');
  };
  assert.equal(
    refusal({ store: 'consul://x' }),
    "--store must be sqlite or etcd://HOST:PORT[,HOST:PORT...]; got 'consul://x'",
  );
  assert.equal(refusal({ store: 'etcd://a:2379/x' }), "--store: 'a:2379/x' is not HOST:PORT");
  assert.equal(
    refusal({ store: 'etcd://a', hostId: 'bad host' }),
    "--host-id must be 1-63 letters, digits, '.', '_' or '-'; got 'bad host'",
  );
  assert.equal(refusal({ store: 'etcd://a', user: 'nopassword' }), '--user must be NAME:PASSWORD');
  assert.equal(
    refusal({ store: 'etcd://a', cacert: '/nonexistent/ca.pem' }).startsWith('--cacert /nonexistent/ca.pem: ENOENT'),
    true,
  );
  assert.equal(refusal({ store: 'etcd://a', cert: '/c.pem' }), '--cert and --key go together');
  assert.equal(refusal({ cacert: '/ca.pem' }), '--cacert is for --store etcd://...; the SQLite store takes none');
  assert.equal(refusal({ hostId: 'x' }), '--host-id is for --store etcd://...; the SQLite store takes none');
});
