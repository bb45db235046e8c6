/**
 * Writes to the shared book that only apply while this daemon holds its
 * host's registration (the fence, presence.ts): a host cut off from etcd
 * longer than its lease, or refused its host id, changes nothing.
 */
import type { Compare, EtcdClient, KeyValue, Op } from './client';
import type { HostPresence } from './presence';

export class FencedWriter {
  constructor(
    private readonly client: EtcdClient,
    private readonly presence: HostPresence,
  ) {}

  /** A transaction that must also find this host's registration as written; true when it applied. */
  async write(compares: Compare[], ops: Op[], deadline: number): Promise<boolean> {
    const result = await this.txn(compares, ops, [], deadline);
    if (result === 'fence') return false;
    return result === 'done';
  }

  /**
   * 'done' when applied; 'fence' when this host's registration was not as written (it is
   * renewed before the caller's next round); else what the failure ops read.
   */
  async txn(compares: Compare[], ops: Op[], failure: Op[], deadline: number): Promise<'done' | 'fence' | KeyValue[][]> {
    const fence = await this.presence.fence(deadline - Date.now());
    const result = await this.client.txn(
      [fence, ...compares],
      ops,
      [{ range: { key: fence.key } }, ...failure],
      deadline - Date.now(),
    );
    if (result.succeeded) return 'done';
    const [registration] = result.results[0] ?? [];
    if (registration?.value !== fence.value) {
      this.presence.forget();
      return 'fence';
    }
    return result.results.slice(1);
  }
}
