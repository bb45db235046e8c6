/**
 * A monotonic clock for unit tests (the shape of driver/slaac-watch.ts's WatchClock): time moves only
 * when the test says, and the waits due run in time order (then in the order they were asked).
 */
import type { WatchClock } from '../../src/driver/slaac-watch';

interface Wait {
  at: number;
  run: () => void;
}

export class FakeClock implements WatchClock {
  private t = 0;
  private seq = 0;
  private readonly waits = new Map<number, Wait>();

  now(): number {
    return this.t;
  }

  after(ms: number, run: () => void): () => void {
    const id = ++this.seq;
    this.waits.set(id, { at: this.t + ms, run });
    return () => this.waits.delete(id);
  }

  get pending(): number {
    return this.waits.size;
  }

  /** Moves time on by `ms`, running each wait that falls due on the way (synchronously). */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const next = this.due(end);
      if (next === undefined) break;
      next();
    }
    this.t = end;
  }

  /**
   * As advance, for code that waits with `await`: after each wait runs, what it resumes (promise
   * continuations, and the waits they ask for) runs too before the next one is looked for.
   */
  async advanceAsync(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await new Promise((resolve) => setImmediate(resolve));
      const next = this.due(end);
      if (next === undefined) break;
      next();
    }
    this.t = end;
  }

  /** The earliest wait due by `end`, taken off the list, time moved to it; undefined when none is. */
  private due(end: number): (() => void) | undefined {
    let next: [number, Wait] | undefined;
    for (const entry of this.waits)
      if (entry[1].at <= end && (next === undefined || entry[1].at < next[1].at)) next = entry;
    if (next === undefined) return undefined;
    this.waits.delete(next[0]);
    this.t = next[1].at;
    return next[1].run;
  }
}
