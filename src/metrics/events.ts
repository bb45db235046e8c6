/**
 * What the daemon did and saw, as events for `lanplug events`: kept in a
 * bounded ring (the last RING_SIZE; older ones are dropped, never the
 * daemon's memory), read back from a time on, and followed as they come.
 * Plain data, one JSON object per event on the wire (NDJSON).
 */

/** A few hours of a busy host's events, a few hundred kilobytes. */
export const RING_SIZE = 2_000;

export interface DaemonEvent {
  /** Grows by one per event of this process: a follower sees no gap and no repeat. */
  seq: number;
  /** ms since the epoch. */
  at: number;
  /** `endpoint.joined`, `conflict.found`, `lease.renewed`, …: what happened, dotted. */
  kind: string;
  /** What it happened to: ids, addresses, MACs, reasons (strings and numbers only). */
  fields: Record<string, string | number>;
}

type Follower = { onEvent: (event: DaemonEvent) => void; onEnd: () => void };

class EventRing {
  private readonly ring: DaemonEvent[] = [];
  private seq = 0;
  private readonly followers = new Set<Follower>();

  record(kind: string, fields: Record<string, string | number>, at = Date.now()): void {
    const event: DaemonEvent = { seq: ++this.seq, at, kind, fields };
    this.ring.push(event);
    if (this.ring.length > RING_SIZE) this.ring.shift();
    for (const f of this.followers) f.onEvent(event);
  }

  /** The kept events at or after `from` (ms), oldest first. */
  since(from: number): DaemonEvent[] {
    return this.ring.filter((e) => e.at >= from);
  }

  /** Calls `onEvent` for each new event until the returned function is called, or endFollowers. */
  follow(onEvent: (event: DaemonEvent) => void, onEnd: () => void): () => void {
    const follower = { onEvent, onEnd };
    this.followers.add(follower);
    return () => this.followers.delete(follower);
  }

  /** Ends every follow (the daemon stops: its server waits for open answers to end). */
  endFollowers(): void {
    for (const f of [...this.followers]) {
      this.followers.delete(f);
      f.onEnd();
    }
  }

  get size(): number {
    return this.ring.length;
  }
}

/** The process's events: the floors record into it, the control socket reads it. */
export const events = new EventRing();

export function recordEvent(kind: string, fields: Record<string, string | number> = {}): void {
  events.record(kind, fields);
}
