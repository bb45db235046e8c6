/** `lanplug daemon --store`: the forms it takes, and one clear line for each mistake. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseStoreChoice, type StoreFlags } from '../../src/state/etcd/store-option';

const flags = (over: Partial<StoreFlags>): StoreFlags => ({
  store: 'sqlite',
  hostId: '',
  cacert: '',
  cert: '',
  key: '',
  user: '',
  userFile: '',
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

test("--user-file: NAME:PASSWORD on one line of a file only root (the daemon's user) reads; anything else refused in one line", () => {
  const dir = mkdtempSync(join(tmpdir(), 'lanplug-user-file-'));
  try {
    const file = (name: string, text: string, mode: number): string => {
      const path = join(dir, name);
      writeFileSync(path, text);
      chmodSync(path, mode);
      return path;
    };
    const read = (userFile: string): unknown => {
      const choice = parseStoreChoice(flags({ store: 'etcd://a', userFile }));
      return choice.kind === 'etcd' ? choice.etcd.user : null;
    };
    assert.deepEqual(read(file('ok', 'lp:s3:cret pass\n', 0o600)), { name: 'lp', password: 's3:cret pass' });
    assert.deepEqual(read(file('crlf', 'lp:pw\r\n', 0o400)), { name: 'lp', password: 'pw' }, 'stricter than 0600');
    const message = (f: () => unknown): string => {
      try {
        f();
      } catch (err) {
        return err instanceof Error ? err.message : String(err);
      }
      return assert.fail('expected a refusal');
    };
    const open = file('open', 'lp:pw\n', 0o640);
    assert.equal(
      message(() => read(open)),
      `--user-file ${open} has mode 0640: other users can read the etcd password; chmod 600 it`,
    );
    const twoLines = file('two', 'lp:pw\nother:pw\n', 0o600);
    assert.equal(
      message(() => read(twoLines)),
      `--user-file ${twoLines} must hold NAME:PASSWORD on one line`,
    );
    const noColon = file('nocolon', 'lp\n', 0o600);
    assert.equal(
      message(() => read(noColon)),
      `--user-file ${noColon} must hold NAME:PASSWORD on one line`,
    );
    assert.match(
      message(() => read(join(dir, 'missing'))),
      /^--user-file \S+missing: ENOENT/,
    );
    if (process.getuid?.() === 0) {
      const theirs = file('theirs', 'lp:pw\n', 0o600);
      chownSync(theirs, 65534, 65534);
      assert.equal(
        message(() => read(theirs)),
        `--user-file ${theirs} is owned by uid 65534: it must be root's (it holds the etcd password)`,
      );
    }
    assert.equal(
      message(() => parseStoreChoice(flags({ store: 'etcd://a', user: 'lp:pw', userFile: join(dir, 'ok') }))),
      '--user and --user-file both give the etcd user: give one',
    );
    assert.equal(
      message(() => parseStoreChoice(flags({ userFile: join(dir, 'ok') }))),
      '--user-file is for --store etcd://...; the SQLite store takes none',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
