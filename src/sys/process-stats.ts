/**
 * The daemon's own figures, for the control socket's Lanplug.Stats (the soak
 * samples them to see that nothing grows with use): memory, open file
 * descriptors, sockets by family, timers and the event loop's active
 * resources. Read from /proc/self and from Node itself; nothing is kept.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { queryObjects } from 'node:v8';

/** A socket's family, as told by which /proc/self/net table lists its inode. */
export interface SocketCounts {
  packet: number;
  netlink: number;
  unix: number;
  /** TCP and UDP, IPv4 and IPv6. */
  inet: number;
  /**
   * Sockets no table of the daemon's own network namespace lists: opened inside another one (a
   * container's, for a DHCP renewal; a CNI pod's), which /proc/self/net does not show.
   */
  elsewhere: number;
}

export interface ProcessFigures {
  rssBytes: number;
  heapUsedBytes: number;
  heapTotalBytes: number;
  externalBytes: number;
  openFds: number;
  sockets: SocketCounts;
  /** Timer objects alive after a full garbage collection, referenced or not (unref'd ones too). */
  timers: number;
  /** The event loop's active handles and requests by kind (process.getActiveResourcesInfo: referenced ones only). */
  resources: Record<string, number>;
}

/**
 * The Timeout class, taken from a timer that is cleared at once. Node does not export it; its
 * instances are what setTimeout and setInterval return.
 */
function timeoutClass(): NonNullable<unknown> {
  const probe = setTimeout(() => undefined, 0);
  clearTimeout(probe);
  return probe.constructor;
}

/**
 * Every figure, now. Counting the timers makes V8 collect garbage first (queryObjects), so the
 * heap figure after it is the live heap, not what the next collection would free: ~10-50 ms, for
 * a diagnostic request, never for the request path.
 */
export function processFigures(): ProcessFigures {
  const timers = countTimers();
  const memory = process.memoryUsage();
  const socketInodes = openSocketInodes();
  return {
    rssBytes: memory.rss,
    heapUsedBytes: memory.heapUsed,
    heapTotalBytes: memory.heapTotal,
    externalBytes: memory.external,
    openFds: socketInodes.openFds,
    sockets: classifySockets(socketInodes.inodes, {
      packet: readOr('/proc/self/net/packet'),
      netlink: readOr('/proc/self/net/netlink'),
      unix: readOr('/proc/self/net/unix'),
      inet: ['tcp', 'tcp6', 'udp', 'udp6'].map((t) => readOr(`/proc/self/net/${t}`)).join('\n'),
    }),
    timers,
    resources: countBy(process.getActiveResourcesInfo()),
  };
}

/**
 * Timeout objects alive. queryObjects is marked experimental in Node 20, and its first call prints
 * a notice to stderr: the daemon's log is JSON lines, so that one notice is not let through.
 */
function countTimers(): number {
  // The very function is put back (a bound copy would stay in its place for good).
  // eslint-disable-next-line @typescript-eslint/unbound-method
  const emitWarning = process.emitWarning;
  process.emitWarning = (): void => undefined;
  try {
    return queryObjects(timeoutClass() as Parameters<typeof queryObjects>[0], { format: 'count' });
  } finally {
    process.emitWarning = emitWarning;
  }
}

/** How many descriptors are open, and the inodes of those that are sockets ("socket:[1234]"). */
function openSocketInodes(): { openFds: number; inodes: string[] } {
  const fds = readdirSync('/proc/self/fd');
  const inodes: string[] = [];
  let openFds = 0;
  for (const fd of fds) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // the descriptor readdir itself used, closed by now
    }
    openFds++;
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    if (inode !== undefined) inodes.push(inode);
  }
  return { openFds, inodes };
}

/** The /proc/self/net tables as text: packet, netlink, unix, and TCP/UDP (both families) joined. */
export interface SocketTables {
  packet: string;
  netlink: string;
  unix: string;
  inet: string;
}

/** Each socket inode counted under the table that lists it (see SocketCounts.elsewhere for the rest). */
export function classifySockets(inodes: readonly string[], tables: SocketTables): SocketCounts {
  const packet = inodesOf(tables.packet, lastColumn);
  const netlink = inodesOf(tables.netlink, lastColumn);
  const unix = inodesOf(tables.unix, (cols) => cols[6]);
  const inet = inodesOf(tables.inet, (cols) => cols[9]);
  const counts: SocketCounts = { packet: 0, netlink: 0, unix: 0, inet: 0, elsewhere: 0 };
  for (const inode of inodes) {
    if (packet.has(inode)) counts.packet++;
    else if (netlink.has(inode)) counts.netlink++;
    else if (unix.has(inode)) counts.unix++;
    else if (inet.has(inode)) counts.inet++;
    else counts.elsewhere++;
  }
  return counts;
}

const lastColumn = (cols: readonly string[]): string | undefined => cols[cols.length - 1];

/** The inode column of every row of a /proc/net table (header lines have none that is a number). */
function inodesOf(table: string, column: (cols: readonly string[]) => string | undefined): Set<string> {
  const out = new Set<string>();
  for (const line of table.split('\n')) {
    const inode = column(line.trim().split(/\s+/));
    if (inode !== undefined && /^\d+$/.test(inode)) out.add(inode);
  }
  return out;
}

function countBy(kinds: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const kind of kinds) out[kind] = (out[kind] ?? 0) + 1;
  return out;
}

function readOr(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
