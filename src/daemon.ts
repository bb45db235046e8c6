/**
 * The long-running daemon: one process serving both network drivers. It
 * wires the layers together and owns the process lifecycle:
 *
 * 1. the state directory is locked (one daemon per directory) and the store
 *    opened (its schema moved forward, or the start refused);
 * 2. the kernel is reconciled with the store, before any socket listens, so
 *    Docker never talks to a daemon that has not caught up after a crash;
 * 3. the plugin sockets are served: the ones systemd passed in, else bound here;
 * 4. every `recheckMs` (and on `lanplug gc`) the reconcile runs again, and
 *    dockerd is asked which rows it has forgotten.
 */
import { basename, dirname, join } from 'node:path';
import { CONTROL_SOCKET_NAME, controlRoutes } from './api/control';
import type { JsonObject } from './api/docker/decode';
import { runCni } from './api/cni/commands';
import { CniServer } from './api/cni/server';
import { DockerEngine } from './api/docker/engine';
import { dropForgottenRows } from './api/docker/forgotten';
import { dhcpIpamRoutes } from './api/docker/dhcp-ipam-routes';
import { ipamRoutes } from './api/docker/ipam-routes';
import { networkDriverRoutes, type Handler } from './api/docker/routes';
import { decodeCreateNetwork } from './api/docker/wire';
import { DHCP_ADDRESS_SPACE, DHCP_IPAM_NAME, OPT_DHCP, parseBoolean } from './driver/options';
import { invalidArgument } from './errors';
import { combinedEndpoint, PluginServer, removeDeadSocket, type PluginEndpoint } from './api/docker/server';
import { cniServices } from './driver/attachments';
import { AskingLinks } from './driver/asking-links';
import { DhcpAddresses } from './driver/dhcp-addresses';
import { DhcpEndpoints } from './driver/dhcp-endpoints';
import { NetworkDriver } from './driver/network-driver';
import { LeaseKeeper } from './dhcp/keeper';
import { IpamAllocator } from './ipam/allocator';
import { OrphanClaims } from './ipam/orphans';
import { reclaimAbsentHosts } from './ipam/reclaim';
import { settleReclaimed } from './ipam/reclaimed';
import { sharedPoolsReport } from './ipam/shared-report';
import { PacketAnnouncer } from './lan/announce';
import { HostAddresses } from './lan/host-addresses';
import { NetlinkEvents, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR } from './netlink/events';
import { LanCitizen } from './citizen';
import { reconcile } from './driver/reconcile';
import { LinkReaper } from './link/reaper';
import { openOwnRtnl } from './driver/link-ownership';
import type { Logger } from './log';
import { DRIVER_KINDS, type DriverKind } from './model/network';
import { StateLock } from './state/lock';
import { SCHEMA_VERSION } from './state/schema';
import { LocalAddressBook, type AddressBook, type BookPool } from './state/address-book';
import { EtcdAddressBook } from './state/etcd/address-book';
import { EtcdClient } from './state/etcd/client';
import type { StoreChoice } from './state/etcd/store-option';
import { SqliteStore } from './state/sqlite';
import { prepareStateDir } from './state/state-dir';
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

/**
 * A managed plugin has one socket (config.json's interface.socket), for one driver kind and the
 * IPAM driver. The plugin that holds the state directory also serves every kind on `peerDir`, where
 * the other kind's plugin relays its calls (two daemons never share one store).
 */
export interface ManagedRole {
  /** The plugin's name as Docker knows it, e.g. lanplug/macvlan:latest (for messages and the lock). */
  pluginName: string;
  kind: DriverKind;
  /** The socket's file name in pluginDir, without `.sock`. */
  socketName: string;
}

/** The name of the managed plugin that serves `kind` (the pair shares everything but the kind). */
function pluginOfKind(managed: ManagedRole, kind: DriverKind): string {
  return managed.pluginName.replace(`/${managed.kind}:`, `/${kind}:`);
}

/** Where the managed plugin holding the state directory serves each kind for the other plugin's relay. */
export function managedPeerSocket(stateDir: string, kind: DriverKind): string {
  return join(stateDir, 'managed', `lanplug-${kind}.sock`);
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
/** The IPAM driver's name: `docker network create --ipam-driver lanplug`. */
export const IPAM_PLUGIN_NAME = 'lanplug';
/** Every socket the daemon serves, by plugin name (`<name>.sock`, and systemd's FileDescriptorName=). */
export const PLUGIN_NAMES = [...DRIVER_KINDS.map((kind) => `lanplug-${kind}`), IPAM_PLUGIN_NAME, DHCP_IPAM_NAME];

/**
 * A managed plugin does not see the containers' namespace files (Docker's SandboxKey is a host path;
 * mounting dockerd's exec root would pin every container's namespace where mounts do not
 * propagate), and a DHCP lease is renewed inside the container: such a network is refused at once.
 */
function withoutDhcp(
  routes: ReadonlyMap<string, Handler>,
  kind: DriverKind,
  pluginName: string,
): ReadonlyMap<string, Handler> {
  const create = routes.get(CREATE_NETWORK);
  if (create === undefined) return routes;
  return new Map(routes).set(CREATE_NETWORK, (body) => {
    const { options, addressSpace } = decodeCreateNetwork(kind, body);
    if (parseBoolean(OPT_DHCP, options[OPT_DHCP]) || addressSpace === DHCP_ADDRESS_SPACE)
      throw invalidArgument(
        `DHCP networks (-o ${OPT_DHCP}=true, --ipam-driver ${DHCP_IPAM_NAME}) need lanplug installed on the host (lanplug install), not the managed plugin ${pluginName}: a DHCP lease is renewed inside the container's namespace, which a managed plugin cannot reach`,
      );
    return create(body);
  });
}
const CREATE_NETWORK = '/NetworkDriver.CreateNetwork';

/** Reports are plain data (strings, numbers, arrays): their JSON form is exact. */
function asJson(value: object): JsonObject {
  return JSON.parse(JSON.stringify(value)) as JsonObject;
}

/** The addresses endpoints on this host hold (lanplug's records). */
function endpointAddresses(store: SqliteStore): Set<string> {
  return new Set(
    store
      .listAllEndpoints()
      .flatMap((e) => [e.ipv4?.address.text, e.ipv6?.address.text].filter((a) => a !== undefined)),
  );
}

/** Whether a lanplug network here uses the pool: only then are all its endpoints in lanplug's records. */
function poolWatched(pool: BookPool | null, driver: NetworkDriver): boolean {
  return pool !== null && driver.networkOfPool(pool.pool) !== null;
}

/** The lanplug network here that uses the pool (its createdAt tells its own reservations from endpoints'). */
function networkOfPool(pool: BookPool | null, driver: NetworkDriver): { createdAt: number } | null {
  return pool === null ? null : driver.networkOfPool(pool.pool);
}

function addressBookFor(choice: StoreChoice, store: SqliteStore, log: Logger): AddressBook {
  return choice.kind === 'sqlite'
    ? new LocalAddressBook(store)
    : new EtcdAddressBook(new EtcdClient(choice.etcd), choice.hostId, log, store);
}

export interface RunningDaemon {
  stop(): Promise<void>;
}

export async function startDaemon(options: DaemonOptions): Promise<RunningDaemon> {
  const { log } = options;
  const managed = options.managed ?? null;
  const passed = managed === null ? systemdSockets(log) : new Map<string, number>();
  const socketNames = managed === null ? PLUGIN_NAMES : [managed.socketName];
  // Refuse before touching anything if another process serves these sockets.
  for (const name of socketNames) {
    if (!passed.has(name)) await removeDeadSocket(join(options.pluginDir, `${name}.sock`));
  }
  prepareStateDir(options.stateDir);
  const lock = StateLock.acquire(
    options.stateDir,
    managed === null ? { kind: 'daemon' } : { kind: 'plugin', name: managed.pluginName },
  );
  const closers: (() => void | Promise<void>)[] = [() => lock.release()];
  const closeAll = async (): Promise<void> => {
    for (const close of closers.reverse()) await close();
  };
  try {
    const store = SqliteStore.open(options.stateDir);
    closers.push(() => store.close());
    if (store.foundVersion !== 0 && store.foundVersion < SCHEMA_VERSION)
      log.info('state database migrated', { path: store.path, from: store.foundVersion, to: SCHEMA_VERSION });
    // Every link this daemon makes carries its state directory's link group: a second daemon's are not its own.
    const { rtnl, groups } = openOwnRtnl(store, log);
    closers.push(() => rtnl.close());
    const reaper = new LinkReaper(rtnl, log, { parkedGroup: groups.parked });
    // Links a daemon parked for removal and did not see go (it died): their leftover records are reconciled below.
    reaper.removeGroup();
    closers.push(() => reaper.close());
    const announcer = new PacketAnnouncer(log);
    closers.push(() => announcer.close());
    const driver = new NetworkDriver(rtnl, store, log, { announcer, remover: reaper });
    const hostAddresses = new HostAddresses(rtnl, NetlinkEvents.open([RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR]));
    closers.push(() => hostAddresses.close());
    const citizen = new LanCitizen(driver, store, log, hostAddresses);
    const conflicts = citizen.conflicts;
    reconcile(rtnl, store, log);
    const keeper = new LeaseKeeper(
      store,
      log,
      (networkId) => {
        const network = store.getNetwork(networkId);
        return network === null ? null : driver.lanLink(network.spec);
      },
      (networkId, endpointId, address) => driver.moveEndpointAddress(networkId, endpointId, address),
      (networkId) => citizen.dhcpOfferCheck(networkId),
    );
    closers.push(() => keeper.stop());
    const dhcp = new DhcpEndpoints(driver, keeper, log);
    const askingLinks = new AskingLinks(rtnl, log);
    // Before any socket listens: leases renew on from the store, without asking dockerd anything.
    dhcp.resume();
    keeper.start(DHCP_WATCH_MS);

    const cniFrontEnd = cniServices(driver, rtnl, store, log, { lan: conflicts, idleMs: options.cniIdleMs });
    const { attachments } = cniFrontEnd;
    closers.push(() => attachments.stop());
    // Before any socket listens: attachments whose namespace went with a reboot free their addresses.
    attachments.collectVanished(false);
    const choice = options.addressStore ?? { kind: 'sqlite' };
    const book = addressBookFor(choice, store, log);
    if (book instanceof EtcdAddressBook) {
      // In the background: neither this daemon nor dockerd's boot waits for etcd.
      book.presence.start();
      closers.push(() => book.presence.stop());
    }
    const orphans = new OrphanClaims(book, log);
    const engine = new DockerEngine(options.dockerSocket);
    let checking: Promise<unknown> = Promise.resolve();
    const recheck = (dryRun: boolean, graceMs = options.forgottenGraceMs): Promise<Record<string, unknown>> => {
      const run = checking.then(async () => {
        const forgotten = await dropForgottenRows(driver, engine, store, log, { dryRun, graceMs });
        const vanished = attachments.collectVanished(dryRun);
        const reconciled = reconcile(rtnl, store, log, { dryRun, askingLinksInUse: askingLinks.inUse });
        const claims = await orphans
          .pass(
            () => endpointAddresses(store),
            async (poolId) => networkOfPool(await book.getPool(poolId), driver),
            {
              graceMs,
              dryRun,
            },
          )
          .catch((err: unknown) => ({ error: String(err) }));
        // Writes markers in the shared book even to look: not on a dry run.
        const absent =
          book instanceof EtcdAddressBook && !dryRun
            ? await reclaimAbsentHosts(
                book,
                async (poolId, address) => citizen.hearNow(await book.getPool(poolId), address),
                log,
                {
                  reclaimAfterMs: choice.kind === 'etcd' ? choice.reclaimAfterMs : 0,
                },
              ).catch((err: unknown) => ({ error: String(err) }))
            : undefined;
        const shared = book instanceof EtcdAddressBook && !dryRun ? book : null;
        const releases = await shared?.retryPoolReleases().catch((err: unknown) => ({ error: String(err) }));
        // Addresses other hosts reclaimed while this one was away, which its containers still use.
        const reclaimed = await (shared === null
          ? undefined
          : settleReclaimed(shared, store, store.listAllEndpoints(), log).catch((err: unknown) => ({
              error: String(err),
            })));
        return {
          Reconcile: reconciled,
          Forgotten: forgotten,
          Vanished: vanished,
          Claims: claims,
          ...(absent === undefined ? {} : { AbsentHosts: absent }),
          ...(releases === undefined ? {} : { PoolReleases: releases }),
          ...(reclaimed === undefined ? {} : { ReclaimedHere: reclaimed }),
        };
      });
      checking = run.catch(() => undefined);
      return run;
    };

    // An address claimed in another pool (a CNI network's on the same LAN) is as taken as one the LAN uses.
    const allocator = new IpamAllocator(book, log, {
      takenIn: (pool) => {
        const lanOrHost = citizen.takenIn(pool);
        return (address) => lanOrHost(address) || store.poolsClaiming(address).some((id) => id !== pool.poolId);
      },
    });
    const driverEndpoint = (kind: DriverKind): PluginEndpoint => ({
      name: `lanplug-${kind}`,
      routes:
        managed === null
          ? networkDriverRoutes(driver, kind, conflicts, dhcp)
          : withoutDhcp(networkDriverRoutes(driver, kind, conflicts, dhcp), kind, pluginOfKind(managed, kind)),
      errorField: 'Err',
    });
    const ipamEndpoint: PluginEndpoint = {
      name: IPAM_PLUGIN_NAME,
      routes: ipamRoutes(allocator, conflicts, (pool) => citizen.rulesForPool(pool)),
      errorField: 'Error',
    };
    // Not in a managed plugin: its DHCP leases could not be renewed in the containers (see withoutDhcp).
    const dhcpIpamEndpoint: PluginEndpoint = {
      name: DHCP_IPAM_NAME,
      routes: dhcpIpamRoutes(new DhcpAddresses(driver, keeper, askingLinks)),
      errorField: 'Error',
    };
    // Legacy: one socket per driver name in the plugin directory. Managed: the plugin's one socket,
    // and one per kind in the state directory for the other kind's plugin to relay to.
    const served: { dir: string; endpoint: PluginEndpoint }[] =
      managed === null
        ? [...DRIVER_KINDS.map(driverEndpoint), ipamEndpoint, dhcpIpamEndpoint].map((endpoint) => ({
            dir: options.pluginDir,
            endpoint,
          }))
        : [
            {
              dir: options.pluginDir,
              endpoint: combinedEndpoint(managed.socketName, [driverEndpoint(managed.kind), ipamEndpoint]),
            },
            ...DRIVER_KINDS.map((kind) => {
              const peer = managedPeerSocket(options.stateDir, kind);
              return {
                dir: dirname(peer),
                endpoint: combinedEndpoint(basename(peer, '.sock'), [driverEndpoint(kind), ipamEndpoint]),
              };
            }),
          ];
    // The control socket first: whoever sees the plugin sockets (dockerd, a test, an operator's gc) may use it at once.
    const control = await PluginServer.listen(
      options.stateDir,
      {
        name: CONTROL_SOCKET_NAME,
        routes: controlRoutes({
          gc: async (dryRun, graceMs) => asJson(await recheck(dryRun, graceMs ?? undefined)),
          sharedPools: async () =>
            book instanceof EtcdAddressBook
              ? asJson({
                  Shared: true,
                  Report: await sharedPoolsReport(book, endpointAddresses(store), (pool) => poolWatched(pool, driver)),
                })
              : { Shared: false },
        }),
        errorField: 'Err',
      },
      log,
    );
    closers.push(() => control.close());
    for (const { dir, endpoint } of served) {
      const fd = passed.get(endpoint.name);
      const server =
        fd === undefined
          ? await PluginServer.listen(dir, endpoint, log)
          : await PluginServer.adopt(fd, join(dir, `${endpoint.name}.sock`), endpoint, log);
      closers.push(() => server.close());
    }

    if (options.cniSocket !== null) {
      const cni = await CniServer.listen(options.cniSocket, (invocation) => runCni(invocation, cniFrontEnd, log), log);
      closers.push(() => cni.close());
    }

    citizen.start(allocator, { syncEveryMs: 2_000, warmEveryMs: 5_000 });
    closers.push(() => citizen.stop());

    if (options.recheckMs > 0) {
      const timer = setInterval(() => {
        recheck(false).catch((err: unknown) => log.error('periodic reconcile failed', { error: String(err) }));
      }, options.recheckMs);
      timer.unref();
      closers.push(() => clearInterval(timer));
    }
    log.info('lanplug daemon started', {
      version: versionLine(),
      ...(managed === null ? {} : { plugin: managed.pluginName }),
      stateDir: options.stateDir,
      pluginDir: options.pluginDir,
      ...(book.hostId === null ? {} : { addressStore: 'etcd', hostId: book.hostId }),
      networks: store.listNetworks().length,
    });
  } catch (err) {
    await closeAll();
    throw err;
  }
  let stopping: Promise<void> | null = null;
  return {
    stop(): Promise<void> {
      stopping ??= closeAll().then(() => log.info('lanplug daemon stopped'));
      return stopping;
    },
  };
}
