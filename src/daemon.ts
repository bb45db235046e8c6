/**
 * The long-running daemon: one process serving both network drivers and the
 * IPAM drivers. This file only composes the floors and owns the process's
 * life, the order things start in and stop in (the reverse); the work of each
 * step is the module's that owns it:
 *
 * 1. the plugin sockets claimed (api/docker/sockets.ts), the state directory
 *    locked (one daemon per directory), the store opened (its schema moved
 *    forward, or the start refused), this directory's links held
 *    (driver/link-ownership.ts);
 * 2. the daemon catches up (housekeeping.ts, resume): the kernel reconciled
 *    with the store, leases renewing on, vanished attachments freed, before
 *    any socket listens, so Docker never talks to a daemon that has not caught
 *    up after a crash;
 * 3. the control socket, then the plugin sockets are served: the ones systemd
 *    passed in, else bound here;
 * 4. every `recheckMs` (and on `lanplug gc`) the housekeeping passes run.
 */
import { controlEndpoint, controlPages } from './api/control';
import { daemonHealth } from './api/control-health';
import { gatherListing } from './api/control-listing';
import { MetricsListener, type ListenAddress } from './api/metrics-listener';
import { runCni } from './api/cni/commands';
import { CniServer } from './api/cni/server';
import { isNetavarkCall, runNetavark } from './api/netavark/commands';
import { DockerEngine } from './api/docker/engine';
import { EngineVersion } from './api/docker/engine-version';
import { dhcpIpamRoutes } from './api/docker/dhcp-ipam-routes';
import { ipamRoutes } from './api/docker/ipam-routes';
import { networkDriverRoutes } from './api/docker/routes';
import { PluginServer } from './api/docker/server';
import { claimPluginSockets, pluginSockets, servePluginSockets, type ManagedRole } from './api/docker/sockets';
import { LanCitizen } from './citizen';
import { LeaseKeeper } from './dhcp/keeper';
import { AskingLinks } from './driver/asking-links';
import { cniServices } from './driver/cni-services';
import { holdOwnLinks } from './driver/link-ownership';
import { NetworkDriver } from './driver/network-driver';
import { DhcpAddresses } from './endpoint/dhcp-addresses';
import { DhcpAttachments } from './endpoint/dhcp-attachments';
import { DhcpEndpoints } from './endpoint/dhcp-endpoints';
import { DhcpIpam } from './endpoint/dhcp-ipam';
import { LanplugIpam } from './endpoint/lanplug-ipam';
import { leaseNetworks } from './endpoint/lease-networks';
import { EndpointService } from './endpoint/service';
import { SharedAttachmentPools } from './endpoint/shared-attachments';
import { Housekeeping } from './housekeeping';
import { IpamAllocator } from './ipam/allocator';
import { PacketAnnouncer } from './lan/announce';
import { SandboxSlaacWatcher } from './driver/slaac-watch';
import { bothWatches, leasedIn, SlaacHostRoutes } from './driver/slaac-host-access';
import { SlaacDhcp6 } from './endpoint/slaac-dhcp6';
import { HostAddresses } from './lan/host-addresses';
import type { Logger } from './log';
import { events } from './metrics/events';
import { registry } from './metrics/registry';
import { NetlinkEvents, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR, RTNLGRP_LINK } from './netlink/events';
import { registerStoreMetrics } from './observe/store-metrics';
import { LocalAddressBook, type AddressBook } from './state/address-book';
import { EtcdAddressBook } from './state/etcd/address-book';
import { EtcdClient } from './state/etcd/client';
import type { StoreChoice } from './state/etcd/store-option';
import { StateLock } from './state/lock';
import { SCHEMA_VERSION } from './state/schema';
import { SqliteStore } from './state/sqlite';
import { prepareStateDir } from './state/state-dir';
import { processFigures } from './sys/process-stats';
import { packageVersion, versionLine } from './version';

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
  /** Serve /metrics over TCP there too (`--metrics-listen`); null or absent: the control socket only. */
  metricsListen?: ListenAddress | null;
  /** How long an identity's reservation outlives its last container (`--identity-expire`; default 30 days). */
  identityExpireMs?: number;
  log: Logger;
}

/** `--identity-expire`'s default (cli/daemon-flags.ts), for daemons started without the flag (the managed plugin). */
const DEFAULT_IDENTITY_EXPIRE_MS = 30 * 86_400_000;

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
  // Refuse before touching anything if another process serves these sockets.
  const passed = await claimPluginSockets(options.pluginDir, managed, log);
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
    const store = closers.add(SqliteStore.open(options.stateDir, log), (s) => s.close());
    closers.add(registerStoreMetrics(registry, store), (unregister) => unregister());
    if (store.foundVersion !== 0 && store.foundVersion < SCHEMA_VERSION)
      log.info('state database migrated', { path: store.path, from: store.foundVersion, to: SCHEMA_VERSION });
    const { rtnl, reaper } = closers.add(await holdOwnLinks(store, options.stateDir, log), (l) => l.release());
    const announcer = closers.add(new PacketAnnouncer(log), (a) => a.close());
    const slaac = closers.add(
      new SandboxSlaacWatcher(log, (link) => rtnl.owns(link), {
        recorded: (e) => store.getEndpoint(e.networkId, e.endpointId) !== null,
      }),
      (w) => w.close(),
    );
    const slaacHostRoutes = closers.add(new SlaacHostRoutes(rtnl, log, { leased: leasedIn(store) }), (f) => f.close());
    const driver = new NetworkDriver(rtnl, store, log, {
      announcer,
      remover: reaper,
      forgottenAfterMs: options.forgottenGraceMs,
      slaac: bothWatches(slaac, slaacHostRoutes),
    });
    const host = closers.add(
      new HostAddresses(rtnl, NetlinkEvents.open([RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR])),
      (h) => h.close(),
    );
    // What tells the LAN sync a link changed: it reads the links only then (lan/eye-sweep.ts).
    const linkChanges = closers.add(NetlinkEvents.open([RTNLGRP_LINK]), (e) => e.close());
    const citizen = new LanCitizen(driver, store, log, host, linkChanges);
    const keeper = closers.add(new LeaseKeeper(store, log, leaseNetworks(driver, citizen)), (k) => k.stop());
    const dhcp = new DhcpEndpoints(driver, keeper, log);
    slaac.followWith(new SlaacDhcp6(driver, keeper, log));
    const askingLinks = new AskingLinks(rtnl, log);
    const choice = options.addressStore ?? { kind: 'sqlite' };
    const etcd = choice.kind === 'etcd' ? new EtcdClient(choice.etcd) : null;
    const book = addressBookFor(choice, etcd, store, log);
    const allocator = new IpamAllocator(book, log, citizen.allocationFilter(), store);
    const sharedAttachments = closers.add(new SharedAttachmentPools(book, allocator, store, log), (s) => s.stop());
    const cni = cniServices(driver, rtnl, store, log, {
      lan: citizen.conflicts,
      idleMs: options.cniIdleMs,
      leases: keeper,
      shared: sharedAttachments,
    });
    closers.add(cni.attachments, (a) => a.stop());
    const engine = new DockerEngine(options.dockerSocket);
    const engineVersion = new EngineVersion(store);
    const housekeeping = new Housekeeping({
      driver,
      rtnl,
      store,
      engine,
      engineVersion,
      attachments: cni.attachments,
      log,
      askingLinks,
      dhcp,
      graceMs: options.forgottenGraceMs,
      identityExpireMs: options.identityExpireMs ?? DEFAULT_IDENTITY_EXPIRE_MS,
      ipam: { book, lan: citizen, reclaimAfterMs: choice.kind === 'etcd' ? choice.reclaimAfterMs : 0 },
    });
    housekeeping.resume();
    slaacHostRoutes.resume(store);
    slaac.resume(store);
    keeper.start(DHCP_WATCH_MS);
    engineVersion.learnSoon(engine);
    if (book instanceof EtcdAddressBook) {
      housekeeping.settleWhenBack();
      // In the background: neither this daemon nor dockerd's boot waits for etcd.
      closers.add(book.presence, (p) => p.stop()).start();
    }
    const endpoints = new EndpointService(
      driver,
      log,
      citizen.conflicts,
      dhcp,
      cni.attachments,
      new DhcpAttachments(cni.leased, driver, keeper, log),
      sharedAttachments,
    );
    // The sockets /healthz connects to, as they come up.
    const served: string[] = [];
    const views = {
      listing: () =>
        gatherListing(store, engine, choice.kind === 'etcd', options.identityExpireMs ?? DEFAULT_IDENTITY_EXPIRE_MS),
      health: daemonHealth({ stateDir: options.stateDir, sockets: () => served, etcd }),
      syncFailure: () => store.syncFailure,
    };
    // The control socket first: whoever sees the plugin sockets (dockerd, a test, an operator's gc) may use it at once.
    const control = closers.add(
      await PluginServer.listen(
        options.stateDir,
        controlEndpoint(housekeeping, () => ({ process: processFigures(), store: store.figures() }), views),
        log,
      ),
      (c) => c.close(),
    );
    served.push(control.socketPath);
    // Before the control socket closes (closers run in reverse): its server waits for open answers, a follow's too.
    closers.add(events, (e) => e.endFollowers());
    if (options.metricsListen !== undefined && options.metricsListen !== null)
      closers.add(await MetricsListener.listen(options.metricsListen, controlPages(views), log), (m) => m.close());
    const sockets = pluginSockets(options, managed, {
      driver: (kind) => networkDriverRoutes(endpoints, kind, engineVersion),
      ipam: ipamRoutes(new LanplugIpam(allocator, citizen, () => performance.now(), sharedAttachments)),
      dhcpIpam: dhcpIpamRoutes(new DhcpIpam(new DhcpAddresses(driver, keeper, askingLinks))),
    });
    for (const server of await servePluginSockets(sockets, passed, log)) {
      closers.add(server, (s) => s.close());
      served.push(server.socketPath);
    }
    if (options.cniSocket !== null) {
      const cniServer = closers.add(
        await CniServer.listen(
          options.cniSocket,
          (call) =>
            isNetavarkCall(call)
              ? runNetavark(call, { endpoints, version: packageVersion() }, log)
              : runCni(call, { endpoints, ipam: cni.ipam }, log),
          log,
        ),
        (s) => s.close(),
      );
      served.push(cniServer.path);
    }
    citizen.start(allocator, { syncEveryMs: 2_000, warmEveryMs: 5_000 });
    closers.add(citizen, (c) => c.stop());
    closers.add(housekeeping.every(options.recheckMs), (stop) => stop());
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

function addressBookFor(choice: StoreChoice, etcd: EtcdClient | null, store: SqliteStore, log: Logger): AddressBook {
  return choice.kind === 'sqlite' || etcd === null
    ? new LocalAddressBook(store)
    : new EtcdAddressBook(etcd, choice.hostId, log, store);
}
