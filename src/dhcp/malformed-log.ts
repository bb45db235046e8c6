/**
 * The log of malformed DHCP answers, rate-limited per network. Any device on
 * the LAN may answer lanplug's broadcast transactions, and one sending
 * malformed answers at line rate (each from another source, each unlike the
 * last) would otherwise write a line per frame: the first on a network is
 * logged as it comes, the rest counted and said in one line a minute (the
 * last one's fields, and how many), until a minute passes without one.
 */
import type { Fields, Logger } from '../log';
import { shortId } from '../model/network';
import type { MalformedReport } from './outcomes';

/** How often a network's count of malformed answers is logged while they keep coming. */
export const MALFORMED_SUMMARY_MS = 60_000;

/** A network's minute: the answers counted since its last line, the last one's fields, its timer. */
interface Window {
  count: number;
  last: Fields;
  timer: NodeJS.Timeout;
}

export class MalformedAnswers {
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly log: Logger,
    private readonly everyMs = MALFORMED_SUMMARY_MS,
  ) {}

  /** The report of malformed answers on network `networkId`, for the DHCP client's transactions there. */
  on(networkId: string): MalformedReport {
    return (fields) => this.report(networkId, fields);
  }

  report(networkId: string, fields: Fields): void {
    const open = this.windows.get(networkId);
    if (open !== undefined) {
      open.count++;
      open.last = fields;
      return;
    }
    this.log.warn('ignoring a malformed DHCP answer', { network: shortId(networkId), ...fields });
    this.windows.set(networkId, { count: 0, last: fields, timer: this.arm(networkId) });
  }

  /** Every timer goes (the daemon stops); what was counted since the last line is not said. */
  stop(): void {
    for (const window of this.windows.values()) clearTimeout(window.timer);
    this.windows.clear();
  }

  private arm(networkId: string): NodeJS.Timeout {
    const timer = setTimeout(() => this.close(networkId), this.everyMs);
    timer.unref();
    return timer;
  }

  /** A network's minute is over: its count said, if any, and another minute begun; a quiet one ends the window. */
  private close(networkId: string): void {
    const window = this.windows.get(networkId);
    if (window === undefined) return;
    if (window.count === 0) {
      this.windows.delete(networkId);
      return;
    }
    this.log.warn('ignoring malformed DHCP answers: more in the last minute', {
      network: shortId(networkId),
      count: window.count,
      ...window.last,
    });
    window.count = 0;
    window.timer = this.arm(networkId);
  }
}
