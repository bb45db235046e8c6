/**
 * When each key last passed a rate limit, kept in the order the passes came: each new pass drops,
 * from the front, the entries older than the limit's interval (they limit nothing any more), so the
 * map holds only the keys that passed within one interval, and no key is ever refused room. For the
 * LAN watch the keys are (link, address) pairs lanplug holds: a storm on any number of them neither
 * grows the map past what lanplug holds nor lets a key through early.
 */
export class PassTimes<V> {
  private readonly last = new Map<string, V>();

  constructor(
    private readonly intervalMs: number,
    private readonly timeOf: (value: V) => number,
  ) {}

  get(key: string): V | undefined {
    return this.last.get(key);
  }

  /** Records a pass of `key` at `at` (the time in `value`), dropping the passes that no longer limit. */
  pass(key: string, value: V, at: number): void {
    // Moved to the back: the map stays in the order of the passes.
    this.last.delete(key);
    this.last.set(key, value);
    for (const [k, v] of this.last) {
      if (at - this.timeOf(v) < this.intervalMs) break;
      this.last.delete(k);
    }
  }

  get size(): number {
    return this.last.size;
  }
}
