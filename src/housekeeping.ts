/**
 * The passes that bring the host, the store and the shared pools back in
 * step: every --recheck-interval in the daemon, and on `lanplug gc` (through
 * the daemon's control socket, or by gc itself when no daemon runs). One
 * module for both, so that gc does what the daemon does:
 *
 * 1. rows dockerd has forgotten (asked of the dockerd they came from);
 * 2. CNI attachments whose namespace is gone;
 * 3. the kernel against the store (driver/reconcile.ts);
 * 4. identity reservations: seen while held, dropped once idle for
 *    --identity-expire (ipam/reservations.ts), in the daemon;
 * and where the daemon runs the IPAM driver (not in an offline gc):
 * 5. IPAM claims no endpoint (nor reservation) holds;
 * 6. on shared pools: addresses of hosts that went away, pool releases etcd
 *    did not take, and addresses reclaimed from this host while it was away.
 *
 * One pass at a time: a gc that arrives during the periodic pass waits for it;
 * a periodic tick that finds a pass running (or waiting) is skipped. The
 * same steps catch a daemon up at start, before any socket listens (resume),
 * and the control socket's requests are answered here (gc, sharedPools,
 * forget).
 */
import type { DockerEngine } from './api/docker/engine';
import type { EngineVersion } from './api/docker/engine-version';
import { dropForgottenRows, type ForgottenReport } from './api/docker/forgotten';
import type { ControlActions } from './api/control';
import type { LanCitizen } from './citizen';
import type { AskingLinks } from './driver/asking-links';
import type { SandboxAttachments } from './driver/sandbox-attachments';
import type { NetworkDriver } from './driver/network-driver';
import { reconcile, type ReconcileReport } from './driver/reconcile';
import type { DhcpEndpoints } from './endpoint/dhcp-endpoints';
import { OrphanClaims, type OrphanReport } from './ipam/orphans';
import { expireReservations, forgetReservation, reservedAddresses, type ReservationReport } from './ipam/reservations';
import { conflict, notFound } from './errors';
import { reclaimAbsentHosts, type ReclaimReport } from './ipam/reclaim';
import { settleReclaimed, type ReclaimedReport } from './ipam/reclaimed';
import { sharedPoolsReport, type SharedPoolsReport } from './ipam/shared-report';
import type { Rtnl } from './link/rtnl';
import type { Logger } from './log';
import { recordEvent } from './metrics/events';
import { addressesOf, shortId } from './model/network';
import type { AddressBook } from './state/address-book';
import { EtcdAddressBook } from './state/etcd/address-book';
import type { PoolReleaseReport } from './state/etcd/pool-membership';
import type { SqliteStore } from './state/sqlite';

/** What a pass did, step by step (what `lanplug gc` prints). */
export interface GcResult {
  Reconcile: ReconcileReport;
  Forgotten: ForgottenReport;
  /** CNI attachments whose namespace is gone. */
  Vanished?: string[];
  /** Identity reservations idle for --identity-expire, dropped (in the daemon). */
  Identities?: ReservationReport | { error: string };
  /** IPAM claims no endpoint holds (where the daemon runs the IPAM driver). */
  Claims?: OrphanReport | { error: string };
  /** Shared pools only: addresses of hosts that went away (not on a dry run). */
  AbsentHosts?: ReclaimReport | { error: string };
  /** Shared pools only: pool releases etcd had not taken, made again (not on a dry run). */
  PoolReleases?: PoolReleaseReport | { error: string };
  /** Shared pools only: addresses other hosts reclaimed while this host was away (not on a dry run). */
  ReclaimedHere?: ReclaimedReport | { error: string };
}

/** The IPAM driver's part: its book, and the LAN side that hears an address before a reclaim. */
export interface IpamHousekeeping {
  book: AddressBook;
  lan: Pick<LanCitizen, 'hearNow'>;
  /** How long a host must be unregistered before its silent addresses are reclaimed (shared pools). */
  reclaimAfterMs: number;
}

export interface HousekeepingParts {
  driver: NetworkDriver;
  rtnl: Rtnl;
  store: SqliteStore;
  engine: DockerEngine;
  attachments: SandboxAttachments;
  log: Logger;
  /** How old a row must be before Docker's not knowing it counts, unless a gc says. */
  graceMs: number;
  /** The DHCP asking links: those an exchange is using now are not leftovers. */
  askingLinks?: Pick<AskingLinks, 'inUse'>;
  /** DHCP endpoints, whose leases renew on at start; absent in an offline gc. */
  dhcp?: Pick<DhcpEndpoints, 'resume'>;
  /** Absent where no IPAM driver runs (an offline gc). */
  ipam?: IpamHousekeeping;
  /** Where the engine's version is kept, learned on the way (api/docker/engine-version.ts). */
  engineVersion?: EngineVersion;
  /** How long an identity's reservation lasts with no container holding it; absent: not checked (offline gc). */
  identityExpireMs?: number;
}

/** What one pass is asked to do. */
export interface PassOptions {
  /** Say what it would do, change nothing. */
  dryRun: boolean;
  /** How old a row must be before Docker's not knowing it counts. */
  graceMs: number;
  /**
   * The dockerd asked now speaks for every network, whatever engine they were seen on before
   * (Docker was reinstalled, its networks went with it): `lanplug gc --accept-engine`.
   */
  acceptEngine?: boolean;
}

export class Housekeeping implements ControlActions {
  private running: Promise<unknown> = Promise.resolve();
  /** Passes asked for and not yet done (the one running included). */
  private pending = 0;
  /** The settle step runs alone too (settleReclaimed): two at once would take a claim back from each other. */
  private settling: Promise<unknown> = Promise.resolve();
  private readonly orphans: OrphanClaims | null;

  constructor(private readonly parts: HousekeepingParts) {
    this.orphans = parts.ipam === undefined ? null : new OrphanClaims(parts.ipam.book, parts.log);
  }

  /**
   * At daemon start, before any socket listens (Docker never talks to a daemon that has not caught
   * up after a crash): the kernel reconciled with the store, every lease renewing on where it was,
   * and attachments whose namespace went with a reboot freed.
   */
  resume(): void {
    const { rtnl, store, log } = this.parts;
    reconcile(rtnl, store, log, { leases: store });
    this.parts.dhcp?.resume();
    this.parts.attachments.collectVanished(false);
  }

  /** A pass as `lanplug gc` asks it of the daemon: with the daemon's grace unless the gc names one. */
  gc(asked: { dryRun: boolean; graceMs: number | null; acceptEngine: boolean }): Promise<GcResult> {
    return this.pass({ ...asked, graceMs: asked.graceMs ?? this.parts.graceMs });
  }

  /** One pass, after the one in progress. */
  pass(options: PassOptions): Promise<GcResult> {
    this.pending++;
    const run = this.running.then(() => this.passNow(options)).finally(() => this.pending--);
    this.running = run.catch(() => undefined);
    return run;
  }

  /** A pass every `everyMs` (0: none), none while one runs: a long pass must not pile up more. */
  every(everyMs: number): () => void {
    if (everyMs <= 0) return () => undefined;
    const timer = setInterval(() => {
      if (this.pending > 0) return;
      this.pass({ dryRun: false, graceMs: this.parts.graceMs }).catch((err: unknown) =>
        this.parts.log.error('periodic reconcile failed', { error: String(err) }),
      );
    }, everyMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  /**
   * Shared pools: addresses other hosts reclaimed while this one was away, settled now (after
   * one settling already under way); what the daemon does as soon as this host registers again.
   */
  settleReclaimed(): Promise<ReclaimedReport | null> {
    const { ipam, store, log } = this.parts;
    const book = ipam?.book;
    if (!(book instanceof EtcdAddressBook)) return Promise.resolve(null);
    const run = this.settling.then(() => settleReclaimed(book, store, store.listAllEndpoints(), log));
    this.settling = run.catch(() => undefined);
    return run;
  }

  /**
   * Shared pools: each time this host registers in etcd again, after being away, an address
   * reclaimed and given to another host meanwhile stops being defended here at once, not at the
   * next periodic pass (or never, with --recheck-interval 0).
   */
  settleWhenBack(): void {
    const book = this.parts.ipam?.book;
    if (!(book instanceof EtcdAddressBook)) return;
    book.presence.onRegistered(() => {
      this.settleReclaimed().catch((err: unknown) =>
        this.parts.log.warn('could not look for addresses reclaimed meanwhile', { error: String(err) }),
      );
    });
  }

  /** What `lanplug status` and `doctor` show of the shared pools; not shared: `{ Shared: false }`. */
  async sharedPools(): Promise<{ Shared: false } | { Shared: true; Report: SharedPoolsReport }> {
    const { driver, store } = this.parts;
    const book = this.parts.ipam?.book;
    if (!(book instanceof EtcdAddressBook)) return { Shared: false };
    const report = await sharedPoolsReport(
      book,
      endpointAddresses(store),
      (p) => driver.networkOfPool(p.pool) !== null,
    );
    return { Shared: true, Report: report };
  }

  /**
   * `lanplug forget NETWORK NAME`: the reservation dropped and its kept claims freed, after the pass
   * in progress (which may be freeing them already). NETWORK: Docker's name, the id or its start.
   */
  forget(network: string, name: string): Promise<object> {
    const run = this.running.then(async () => {
      const networkId = await this.networkNamed(network);
      const dropped = await forgetReservation(this.parts.store, this.parts.ipam?.book ?? null, networkId, name);
      this.parts.log.info('identity reservation forgotten', { network: shortId(networkId), identity: name });
      return { Network: networkId, Name: dropped.name, IPv4: dropped.ipv4, IPv6: dropped.ipv6, Mac: dropped.mac };
    });
    this.running = run.catch(() => undefined);
    return run;
  }

  /** A lanplug network by its id (or the start of it), else by Docker's name for it. */
  private async networkNamed(wanted: string): Promise<string> {
    const ids = this.parts.store.listNetworks().map((n) => n.spec.networkId);
    const exact = ids.find((id) => id === wanted);
    if (exact !== undefined) return exact;
    const byId = wanted.length > 0 ? ids.filter((id) => id.startsWith(wanted)) : [];
    if (byId.length > 1)
      throw conflict(`network id ${wanted} is the start of ${byId.length} lanplug networks: give more of it`);
    if (byId[0] !== undefined) return byId[0];
    for (const id of ids) {
      const view = await this.parts.engine.network(id).catch(() => null);
      if (view?.name === wanted) return id;
    }
    // Shown escaped and short: it is the command line's, on its way to a terminal.
    const shown = JSON.stringify(wanted.length > 80 ? `${wanted.slice(0, 80)}…` : wanted);
    throw notFound(`no lanplug network is named ${shown} (lanplug ls --identities lists the reservations)`);
  }

  private async passNow(options: PassOptions): Promise<GcResult> {
    const { driver, rtnl, store, engine, attachments, log } = this.parts;
    const { dryRun, graceMs } = options;
    const forgotten = await dropForgottenRows(driver, engine, store, log, {
      dryRun,
      graceMs,
      acceptEngine: options.acceptEngine === true,
      onVersion: (version) => this.parts.engineVersion?.learned(version),
    });
    const vanished = attachments.collectVanished(dryRun);
    // Their shared-pool addresses back in etcd before the orphan check reads the claims.
    await attachments.settled();
    const result: GcResult = {
      Forgotten: forgotten,
      Vanished: vanished,
      Reconcile: reconcile(rtnl, store, log, {
        dryRun,
        leases: store,
        ...(this.parts.askingLinks === undefined ? {} : { askingLinksInUse: this.parts.askingLinks.inUse }),
      }),
    };
    const { ipam, identityExpireMs } = this.parts;
    if (identityExpireMs !== undefined)
      result.Identities = await expireReservations(store, ipam?.book ?? null, log, {
        now: Date.now(),
        expireMs: identityExpireMs,
        dryRun,
      }).catch((err: unknown) => ({ error: String(err) }));
    const orphans = this.orphans;
    if (ipam === undefined || orphans === null) return recorded(result, dryRun);
    result.Claims = await orphans
      .pass(
        () => endpointAddresses(store),
        async (poolId) => {
          const pool = await ipam.book.getPool(poolId);
          return pool === null ? null : driver.networkOfPool(pool.pool);
        },
        { graceMs, dryRun },
      )
      .catch((err: unknown) => ({ error: String(err) }));
    // The shared steps write markers in the shared book even to look: not on a dry run.
    const shared = ipam.book instanceof EtcdAddressBook && !dryRun ? ipam.book : null;
    if (shared === null) return recorded(result, dryRun);
    result.AbsentHosts = await reclaimAbsentHosts(
      shared,
      async (poolId, address) => ipam.lan.hearNow(await shared.getPool(poolId), address),
      log,
      { reclaimAfterMs: ipam.reclaimAfterMs },
    ).catch((err: unknown) => ({ error: String(err) }));
    result.PoolReleases = await shared.retryPoolReleases().catch((err: unknown) => ({ error: String(err) }));
    // Addresses other hosts reclaimed while this one was away, which its containers still use.
    result.ReclaimedHere = (await this.settleReclaimed().catch((err: unknown) => ({ error: String(err) }))) ?? {
      claimedBack: [],
      lost: [],
    };
    return recorded(result, dryRun);
  }
}

/** A pass's result, its actions told to `lanplug events` first (a dry run did nothing to tell). */
function recorded(result: GcResult, dryRun: boolean): GcResult {
  if (!dryRun) recordGcEvents(result);
  return result;
}

/**
 * What a gc pass did, as events: rows Docker forgot and that went, CNI attachments whose namespace
 * had gone, IPAM claims no endpoint held, shared pool releases made at last. Reconcile's actions and
 * shared-pool reclaims are told where they are made (driver/reconcile.ts, ipam/reclaim.ts).
 */
export function recordGcEvents(result: GcResult): void {
  for (const network of result.Forgotten.networks) recordEvent('gc.network-forgotten', { network: shortId(network) });
  for (const endpoint of result.Forgotten.endpoints)
    recordEvent('gc.endpoint-forgotten', { endpoint: shortId(endpoint) });
  for (const attachment of result.Vanished ?? []) recordEvent('gc.attachment-vanished', { attachment });
  if (result.Claims !== undefined && 'released' in result.Claims)
    for (const address of result.Claims.released) recordEvent('gc.claim-released', { address });
  if (result.PoolReleases !== undefined && 'released' in result.PoolReleases)
    for (const pool of result.PoolReleases.released) recordEvent('gc.pool-released', { pool });
}

/** The addresses endpoints on this host hold (lanplug's records), and those identity reservations keep. */
function endpointAddresses(store: SqliteStore): Set<string> {
  const held = new Set(store.listAllEndpoints().flatMap((e) => addressesOf(e).map((a) => a.text)));
  for (const address of reservedAddresses(store)) held.add(address);
  return held;
}
