/**
 * The `lanplug` IPAM driver's RequestAddress on each address book: this
 * host's SQLite store and a 3-member etcd cluster (Debian's etcd 3.4, data on
 * the lab's temp dir, loopback), through the allocator Docker's calls reach.
 * The plugin socket's own round trip is the "round trip floor" row. Then two
 * hosts allocating at once from one shared /24.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { IpamAllocator } from '../../src/ipam/allocator';
import { silentLogger } from '../../src/log';
import { parseAddress, parsePrefix } from '../../src/net/address';
import { LocalAddressBook, type AddressBook } from '../../src/state/address-book';
import { EtcdAddressBook } from '../../src/state/etcd/address-book';
import { EtcdClient } from '../../src/state/etcd/client';
import { SqliteStore } from '../../src/state/sqlite';
import { startEtcdCluster } from '../lab/etcd-cluster';
import { sinceMs, type Results } from './stats';

const mac = (n: number): string =>
  `02:00:00:${((n >> 16) & 0xff).toString(16).padStart(2, '0')}:${((n >> 8) & 0xff).toString(16).padStart(2, '0')}:${(n & 0xff).toString(16).padStart(2, '0')}`;

async function requestRelease(book: AddressBook, subnet: string, cycles: number): Promise<number[]> {
  const allocator = new IpamAllocator(book, silentLogger);
  const { poolId } = await allocator.requestPool({
    addressSpace: 'LocalDefault',
    pool: parsePrefix(subnet),
    range: null,
    v6: false,
  });
  await allocator.requestAddress({ poolId, preferred: null, gateway: true, mac: null });
  const samples: number[] = [];
  for (let i = 0; i < cycles + 20; i++) {
    const start = process.hrtime.bigint();
    const got = await allocator.requestAddress({ poolId, preferred: null, gateway: false, mac: mac(i) });
    if (i >= 20) samples.push(sinceMs(start));
    await allocator.releaseAddress(poolId, got.address);
  }
  return samples;
}

export async function sharedPoolRequests(results: Results, cycles: number): Promise<void> {
  const dir = mkdtempSync('/tmp/lp-lab-bench-etcd-');
  const store = SqliteStore.open(dir);
  const cluster = await startEtcdCluster({ dir, address: '127.0.0.1', basePort: 32500 });
  const books: EtcdAddressBook[] = [];
  const hostStores: SqliteStore[] = [];
  const hostStore = (host: string): SqliteStore => {
    const opened = SqliteStore.open(join(dir, host));
    hostStores.push(opened);
    return opened;
  };
  try {
    results.add(
      'shared pools',
      'RequestAddress, SQLite store (allocator + store)',
      await requestRelease(new LocalAddressBook(store), '10.80.0.0/24', cycles),
    );
    const etcdBook = (host: string): EtcdAddressBook => {
      const book = new EtcdAddressBook(
        new EtcdClient({ endpoints: cluster.clientUrls }),
        host,
        silentLogger,
        hostStore(host),
      );
      books.push(book);
      return book;
    };
    results.add(
      'shared pools',
      'RequestAddress, etcd store, 3 members (allocator + store)',
      await requestRelease(etcdBook('bench-a'), '10.81.0.0/24', cycles),
    );
    // Two hosts, 100 addresses each, all asked at once from one /24 (200 of its 253 usable).
    const hosts = ['bench-b', 'bench-c'].map((h) => new IpamAllocator(etcdBook(h), silentLogger));
    let poolId = '';
    for (const allocator of hosts)
      ({ poolId } = await allocator.requestPool({
        addressSpace: 'LocalDefault',
        pool: parsePrefix('10.82.0.0/24'),
        range: null,
        v6: false,
      }));
    const each: number[] = [];
    const start = process.hrtime.bigint();
    const got = await Promise.all(
      Array.from({ length: 200 }, async (_, n) => {
        const t = process.hrtime.bigint();
        const allocator = hosts[n % 2] as IpamAllocator;
        const address = await allocator.requestAddress({
          poolId,
          preferred: null,
          gateway: false,
          mac: mac(0x10000 + n),
        });
        each.push(sinceMs(t));
        return address.address.text;
      }),
    );
    const wall = sinceMs(start);
    if (new Set(got).size !== got.length) throw new Error('bench: two hosts were given one address');
    results.add('shared pools', 'RequestAddress, 2 hosts × 100 at once on one etcd /24 (each)', each);
    results.figure('2 hosts × 100 RequestAddress at once on etcd (wall)', wall, 'ms');
    for (const [n, text] of got.entries())
      await (hosts[n % 2] as IpamAllocator).releaseAddress(poolId, parseAddress(text));
  } finally {
    for (const book of books) book.presence.stop();
    cluster.stop();
    store.close();
    for (const opened of hostStores) opened.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
