/**
 * The long-running daemon: one process serving both network drivers and the
 * IPAM drivers. This file composes the layers and owns the process's life:
 *
 * 1. the state directory is locked (one daemon per directory) and the store
 *    opened (its schema moved forward, or the start refused);
 * 2. the kernel is reconciled with the store and leases renew on, before any
 *    socket listens, so Docker never talks to a daemon that has not caught up
 *    after a crash;
 * 3. the plugin sockets are served: the ones systemd passed in, else bound here;
 * 4. every `recheckMs` (and on `lanplug gc`) the housekeeping passes run.
 */
import { join } from 'node:path';
import { CONTROL_SOCKET_NAME, controlRoutes } from './api/control';
import type { JsonObject } from './api/docker/decode';
import { runCni } from './api/cni/commands';
import { CniServer } from './api/cni/server';
import { DockerEngine } from './api/docker/engine';
import { EngineVersion } from './api/docker/engine-version';
import { dhcpIpamRoutes } from './api/docker/dhcp-ipam-routes';
import { ipamRoutes } from './api/docker/ipam-routes';
import { networkDriverRoutes } from './api/docker/routes';
import { PluginServer, removeDeadSocket } from './api/docker/server';
import { PLUGIN_NAMES, pluginSockets, type ManagedRole } from './api/docker/sockets';
import { LanCitizen } from './citizen';
import { LeaseKeeper } from './dhcp/keeper';
import { AskingLinks } from './driver/asking-links';
import { cniServices } from './driver/attachments';
import { DhcpAddresses } from './driver/dhcp-addresses';
import { holdLinkGroup, linkGroupsOf, openOwnRtnl } from './driver/link-ownership';
import { NetworkDriver } from './driver/network-driver';
import { reconcile } from './driver/reconcile';
import { DhcpEndpoints } from './endpoint/dhcp-endpoints';
import { leaseNetworks } from './endpoint/lease-networks';
import { EndpointService } from './endpoint/service';
import { endpointAddresses, Housekeeping } from './housekeeping';
import { IpamAllocator } from './ipam/allocator';
import { OrphanClaims } from './ipam/orphans';
import { sharedPoolsReport } from './ipam/shared-report';
import { PacketAnnouncer } from './lan/announce';
import { HostAddresses } from './lan/host-addresses';
import { LinkReaper } from './link/reaper';
import type { Logger } from './log';
import { NetlinkEvents, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR } from './netlink/events';
import { LocalAddressBook, type AddressBook } from './state/address-book';
import { EtcdAddressBook } from './state/etcd/address-book';
import { EtcdClient } from './state/etcd/client';
import type { StoreChoice } from './state/etcd/store-option';
import { StateLock } from './state/lock';
import { SCHEMA_VERSION } from './state/schema';
import { SqliteStore } from './state/sqlite';
import { prepareStateDir } from './state/state-dir';
import { processFigures } from './sys/process-stats';
import { systemdSockets } from './systemd-sockets';
import { versionLine } from './version';

export interface DaemonOptions {
  stateDir: string;
  pluginDir: string;
  /** dockerd's API socket, asked in the background which rows Docker has forgotten. */
  dockerSocket: string;
  /** How often the reconcile runs again; 0 turns the periodic run off. */
  recheckMs: number;
  /** How old a row must be before Docker's not knowing it means Docker forgot it. */
  forgottenGraceMs: number;
  /** The socket lanplug's CNI executables talk to; null: no CNI front end. */
  cniSocket: string | null;
  /** How long a CNI network stays without attachments before it is removed. */
  cniIdleMs: number;
  /** Run as a managed Docker plugin (see src/plugin/serve.ts); null: a daemon on the host. */
  managed?: ManagedRole | null;
  /** Where the IPAM driver's pools live: this host's SQLite store (default), or etcd shared by a fleet. */
  addressStore?: StoreChoice;
  log: Logger;
}

/** How often the lease keeper looks for containers that vanished without a Leave. */
const DHCP_WATCH_MS = 30_000;
/**
 * Node flags the daemon runs with (the service's ExecStart, the managed plugin's entrypoint, `npm
 * start`). A young generation of 2 MB semi-spaces instead of V8's 16: the daemon's garbage is small
 * and short-lived, and the default let RSS grow to 87 MB with 1,000 endpoints, 75 MB with this (bench,
 * this machine); GC pauses stay under 1.5 ms either way (--trace-gc).
 */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2'];

export interface RunningDaemon {
  stop(): Promise<void>;
}

/** What the daemon must undo at stop, in reverse order of making. */
class Closers {
  private readonly closers: (() => void | Promise<void>)[] = [];
  add<T>(made: T, close: (made: T) => void | Promise<void>): T {
    this.closers.push(() => close(made));
    return made;
  }
  async closeAll(): Promise<void> {
    for (const close of this.closers.reverse()) await close();
  }
}

export async function startDaemon(options: DaemonOptions): Promise<RunningDaemon> {
  const { log } = options;
  const managed = options.managed ?? null;
  const passed = managed === null ? systemdSockets(log) : new Map<string, number>();
  // Refuse before touching anything if another process serves these sockets.
  for (const name of managed === null ? PLUGIN_NAMES : [managed.socketName])
    if (!passed.has(name)) await removeDeadSocket(join(options.pluginDir, `${name}.sock`));
  prepareStateDir(options.stateDir);
  const closers = new Closers();
  closers.add(
    StateLock.acquire(
      options.stateDir,
      managed === null ? { kind: 'daemon' } : { kind: 'plugin', name: managed.pluginName },
    ),
    (lock) => lock.release(),
  );
  try {
    const store = closers.add(SqliteStore.open(options.stateDir), (s) => s.close());
    if (store.foundVersion !== 0 && store.foundVersion < SCHEMA_VERSION)
      log.info('state database migrated', { path: store.path, from: store.foundVersion, to: SCHEMA_VERSION });
    // Every link this daemon makes carries its state directory's link group: a second daemon's are not its own.
    const groups = linkGroupsOf(store, log);
    closers.add(await holdLinkGroup(groups, options.stateDir), (held) => held.release());
    const { rtnl } = closers.add(openOwnRtnl(store, log, { groups }), (own) => own.rtnl.close());
    const reaper = closers.add(new LinkReaper(rtnl, log, { parkedGroup: groups.parked }), (r) => r.close());
    // Links a daemon parked for removal and did not see go (it died): their leftover records are reconciled below.
    reaper.removeGroup();
    const announcer = closers.add(new PacketAnnouncer(log), (a) => a.close());
    const driver = new NetworkDriver(rtnl, store, log, { announcer, remover: reaper });
    const host = closers.add(
      new HostAddresses(rtnl, NetlinkEvents.open([RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR])),
      (h) => h.close(),
    );
    const citizen = new LanCitizen(driver, store, log, host);
    reconcile(rtnl, store, log);
    const keeper = closers.add(new LeaseKeeper(store, log, leaseNetworks(driver, citizen)), (k) => k.stop());
    const dhcp = new DhcpEndpoints(driver, keeper, log);
    const askingLinks = new AskingLinks(rtnl, log);
    // Before any socket listens: leases renew on from the store, without asking dockerd anything.
    dhcp.resume();
    keeper.start(DHCP_WATCH_MS);
    const cni = cniServices(driver, rtnl, store, log, { lan: citizen.conflicts, idleMs: options.cniIdleMs });
    closers.add(cni.attachments, (a) => a.stop());
    // Before any socket listens: attachments whose namespace went with a reboot free their addresses.
    cni.attachments.collectVanished(false);
    const choice = options.addressStore ?? { kind: 'sqlite' };
    const book = addressBookFor(choice, store, log);
    const engine = new DockerEngine(options.dockerSocket);
    const engineVersion = new EngineVersion(store);
    // In the background, never from a request: dockerd calls plugins before it serves its API at boot.
    engine.info().then(
      (info) => {
        if (info.version !== null) engineVersion.learned(info.version);
      },
      () => undefined, // not up yet: the periodic pass learns it
    );
    const housekeeping = new Housekeeping({
      driver,
      rtnl,
      store,
      engine,
      engineVersion,
      attachments: cni.attachments,
      log,
      askingLinksInUse: () => askingLinks.inUse,
      ipam: {
        book,
        orphans: new OrphanClaims(book, log),
        hear: (pool, address) => citizen.hearNow(pool, address),
        reclaimAfterMs: choice.kind === 'etcd' ? choice.reclaimAfterMs : 0,
      },
    });
    if (book instanceof EtcdAddressBook) {
      // Back after being away: an address reclaimed and given to another host meanwhile must stop being
      // defended here now, not at the next periodic pass (or never, with --recheck-interval 0).
      book.presence.onRegistered(() => {
        housekeeping
          .settleReclaimed()
          .catch((err: unknown) =>
            log.warn('could not look for addresses reclaimed meanwhile', { error: String(err) }),
          );
      });
      // In the background: neither this daemon nor dockerd's boot waits for etcd.
      closers.add(book.presence, (p) => p.stop()).start();
    }
    // An address claimed in another pool (a CNI network's on the same LAN) is as taken as one the LAN uses.
    const allocator = new IpamAllocator(book, log, {
      takenIn: (pool) => {
        const lanOrHost = citizen.takenIn(pool);
        return (address) => lanOrHost(address) || store.poolsClaiming(address).some((id) => id !== pool.poolId);
      },
    });
    const endpoints = new EndpointService(driver, citizen.conflicts, dhcp, cni.attachments);
    // The control socket first: whoever sees the plugin sockets (dockerd, a test, an operator's gc) may use it at once.
    const control = await PluginServer.listen(
      options.stateDir,
      {
        name: CONTROL_SOCKET_NAME,
        routes: controlRoutes({
          gc: async (asked) =>
            asJson(await housekeeping.pass({ ...asked, graceMs: asked.graceMs ?? options.forgottenGraceMs })),
          sharedPools: async () =>
            book instanceof EtcdAddressBook
              ? asJson({
                  Shared: true,
                  Report: await sharedPoolsReport(
                    book,
                    endpointAddresses(store),
                    (p) => driver.networkOfPool(p.pool) !== null,
                  ),
                })
              : { Shared: false },
          stats: () => ({ process: processFigures(), store: store.figures() }),
        }),
        errorField: 'Err',
      },
      log,
    );
    closers.add(control, (c) => c.close());
    const sockets = pluginSockets(options, managed, {
      driver: (kind) => networkDriverRoutes(endpoints, kind, engineVersion),
      ipam: ipamRoutes(allocator, citizen.conflicts, (pool) => citizen.rulesForPool(pool)),
      dhcpIpam: dhcpIpamRoutes(new DhcpAddresses(driver, keeper, askingLinks)),
    });
    for (const { dir, endpoint } of sockets) {
      const fd = passed.get(endpoint.name);
      const server =
        fd === undefined
          ? await PluginServer.listen(dir, endpoint, log)
          : await PluginServer.adopt(fd, join(dir, `${endpoint.name}.sock`), endpoint, log);
      closers.add(server, (s) => s.close());
    }
    if (options.cniSocket !== null)
      closers.add(
        await CniServer.listen(options.cniSocket, (call) => runCni(call, { endpoints, ipam: cni.ipam }, log), log),
        (s) => s.close(),
      );
    citizen.start(allocator, { syncEveryMs: 2_000, warmEveryMs: 5_000 });
    closers.add(citizen, (c) => c.stop());
    closers.add(housekeeping.every(options.recheckMs, options.forgottenGraceMs), (stop) => stop());
    log.info('lanplug daemon started', {
      version: versionLine(),
      ...(managed === null ? {} : { plugin: managed.pluginName }),
      stateDir: options.stateDir,
      pluginDir: options.pluginDir,
      ...(book.hostId === null ? {} : { addressStore: 'etcd', hostId: book.hostId }),
      networks: store.listNetworks().length,
    });
  } catch (err) {
    await closers.closeAll();
    throw err;
  }
  let stopping: Promise<void> | null = null;
  return {
    stop(): Promise<void> {
      stopping ??= closers.closeAll().then(() => log.info('lanplug daemon stopped'));
      return stopping;
    },
  };
}

function addressBookFor(choice: StoreChoice, store: SqliteStore, log: Logger): AddressBook {
  return choice.kind === 'sqlite'
    ? new LocalAddressBook(store)
    : new EtcdAddressBook(new EtcdClient(choice.etcd), choice.hostId, log, store);
}

/** Reports are plain data (strings, numbers, arrays): their JSON form is exact. */
function asJson(value: object): JsonObject {
  return JSON.parse(JSON.stringify(value)) as JsonObject;
}
