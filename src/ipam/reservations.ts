/**
 * Reservations by identity name (docs/identity.md): a container run with
 * `--driver-opt lanplug.identity=NAME` leaves behind, per network, what it
 * had — MAC, addresses, DHCP client ids — and the `lanplug` IPAM keeps the
 * addresses claimed after Docker gives them back, so that no other
 * container's automatic allocation takes them, until the name comes back,
 * `lanplug forget` drops the reservation, or it has been idle for
 * `--identity-expire`.
 *
 * What comes back by itself depends on what the engine tells lanplug: Docker
 * 29 names the container in its IPAM request (`com.docker.network.endpoint.name`),
 * and an automatic request naming a reservation's name gets its address
 * back; Docker 20.10 to 28 name nobody there, so `docker run --ip` of the
 * reserved address is the way (the IPAM lets it through, CreateEndpoint
 * checks that the name is the reservation's).
 */
import { conflict, invalidArgument, notFound } from '../errors';
import type { Logger } from '../log';
import { recordEvent } from '../metrics/events';
import { parseAddress, type IpAddress } from '../net/address';
import type { AddressBook } from '../state/address-book';
import type { IdentityReservation, IdentityStore } from '../state/identity-store';

/** What an endpoint with an identity holds now: what its reservation becomes. */
export interface HeldIdentity {
  networkId: string;
  endpointId: string;
  name: string;
  mac: string | null;
  ipv4: string | null;
  ipv6: string | null;
  clientId: string;
  duid: string;
}

/** How a refusal names the network (`lanplug forget NETWORK NAME`): Docker's name is not known here. */
function shortNetwork(networkId: string): string {
  return networkId.slice(0, 12);
}

/**
 * CreateEndpoint: an endpoint whose address a reservation of another name keeps (it reached the
 * endpoint through `--ip`: automatic allocation never hands it out) is refused in one line naming it.
 * A reservation whose container is alive needs no word here: its address is held by an endpoint.
 */
export function refuseReservedAddress(
  store: IdentityStore,
  endpoint: { networkId: string; ipv4: string | null; ipv6: string | null },
  identity: string | null,
): void {
  for (const address of [endpoint.ipv4, endpoint.ipv6]) {
    if (address === null) continue;
    const holder = store
      .reservationsOfAddress(address)
      .find(
        (r) => r.networkId === endpoint.networkId && r.name !== identity && r.endpointId === null && r.kept.length > 0,
      );
    if (holder === undefined) continue;
    throw conflict(
      `address ${address} is reserved for lanplug.identity=${holder.name} on network ${shortNetwork(holder.networkId)} (no container has held it since ${new Date(holder.lastSeen).toISOString()}): run that container with --driver-opt lanplug.identity=${holder.name}, or free the address with lanplug forget ${shortNetwork(holder.networkId)} ${holder.name}`,
    );
  }
}

/**
 * CreateEndpoint, with the endpoint recorded: its reservation is what it holds now (an explicit
 * `--ip` or `--mac-address` updates it as any new address does), held by it. Claims kept for
 * addresses it no longer has are left to the orphan check, which frees claims nobody holds.
 */
export function recordHeld(store: IdentityStore, held: HeldIdentity, now: number): IdentityReservation {
  const before = store.getReservation(held.networkId, held.name);
  const addresses = [held.ipv4, held.ipv6];
  const reservation: IdentityReservation = {
    ...held,
    kept: (before?.kept ?? []).filter((k) => addresses.includes(k.address)),
    createdAt: before?.createdAt ?? now,
    lastSeen: now,
  };
  store.putReservation(reservation);
  return reservation;
}

/** DeleteEndpoint: the endpoint's reservations are no longer held; their idle time starts now. */
export function releaseHolder(store: IdentityStore, networkId: string, endpointId: string, now: number): void {
  for (const r of store.listReservations())
    if (r.networkId === networkId && r.endpointId === endpointId)
      store.putReservation({ ...r, endpointId: null, lastSeen: now });
}

/** The reservations, and whether an endpoint is still recorded (a reservation it holds is not idle). */
export type ReservationStore = IdentityStore & { getEndpoint(networkId: string, endpointId: string): unknown };

/**
 * The IPAM, when Docker gives an address back: true when a reservation names it, which then keeps
 * the claim (recorded with its pool, to be freed by `lanplug forget` or expiry). Docker gives it back
 * after the endpoint's DeleteEndpoint: a reservation a live endpoint still holds is another network's
 * with the same address (overlapping subnets, one on Docker's own IPAM), whose claim this is not.
 */
export function keepClaim(store: ReservationStore, poolId: string, address: IpAddress): boolean {
  const reservations = store
    .reservationsOfAddress(address.text)
    .filter((r) => r.endpointId === null || store.getEndpoint(r.networkId, r.endpointId) === null);
  for (const r of reservations)
    if (!r.kept.some((k) => k.poolId === poolId && k.address === address.text))
      store.putReservation({ ...r, kept: [...r.kept, { poolId, address: address.text }] });
  return reservations.length > 0;
}

/**
 * The IPAM, when an address asked for by value is claimed already: true when the claim is one kept
 * for a reservation no container holds. It is let through: the IPAM does not know the container's
 * identity (20.10-28 send none), CreateEndpoint checks it (refuseReservedAddress).
 */
export function isKeptClaim(store: IdentityStore, poolId: string, address: IpAddress): boolean {
  return store
    .reservationsOfAddress(address.text)
    .some((r) => r.endpointId === null && r.kept.some((k) => k.poolId === poolId && k.address === address.text));
}

/**
 * The IPAM, for an automatic request that names its container (Docker 29): the address kept in this
 * pool for the reservation of that name, when no container holds it; null otherwise.
 */
export function keptAddressFor(store: IdentityStore, poolId: string, name: string): IpAddress | null {
  for (const r of store.listReservations()) {
    if (r.name !== name || r.endpointId !== null) continue;
    const kept = r.kept.find((k) => k.poolId === poolId);
    if (kept !== undefined) return parseAddress(kept.address);
  }
  return null;
}

/** The addresses reservations keep: never orphans to the orphan check. */
export function reservedAddresses(store: IdentityStore): Set<string> {
  return new Set(store.listReservations().flatMap((r) => r.kept.map((k) => k.address)));
}

/** What a pass did to the reservations: `network/name` of each that went. */
export interface ReservationReport {
  expired: string[];
}

/**
 * The periodic check: a reservation a live endpoint holds is seen now; one whose endpoint is gone
 * (its DeleteEndpoint lost) starts idling; one idle for `expireMs` goes, its kept claims freed.
 */
export async function expireReservations(
  store: IdentityStore & { getEndpoint(networkId: string, endpointId: string): unknown },
  book: AddressBook | null,
  log: Logger,
  options: { now: number; expireMs: number; dryRun: boolean },
): Promise<ReservationReport> {
  const report: ReservationReport = { expired: [] };
  for (const r of store.listReservations()) {
    if (r.endpointId !== null) {
      const alive = store.getEndpoint(r.networkId, r.endpointId) !== null;
      if (!options.dryRun) store.putReservation(alive ? { ...r, lastSeen: options.now } : { ...r, endpointId: null });
      continue;
    }
    if (options.now - r.lastSeen < options.expireMs) continue;
    report.expired.push(`${shortNetwork(r.networkId)}/${r.name}`);
    if (options.dryRun) continue;
    await dropReservation(store, book, r);
    log.info('identity reservation expired', {
      network: shortNetwork(r.networkId),
      identity: r.name,
      idleSince: new Date(r.lastSeen).toISOString(),
    });
    recordEvent('identity.expired', { network: shortNetwork(r.networkId), identity: r.name });
  }
  return report;
}

/** What driver/options.ts parseEndpointLabel lets through as an identity (ipam/ may not import driver/). */
const IDENTITY_NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$/;

/**
 * `lanplug forget NETWORK NAME`: refused in one line while a container holds it. A name no identity
 * can have is refused before anything, shown escaped: it comes from the command line, and the
 * refusal goes to a terminal and the log.
 */
export async function forgetReservation(
  store: IdentityStore & { getEndpoint(networkId: string, endpointId: string): unknown },
  book: AddressBook | null,
  networkId: string,
  name: string,
): Promise<IdentityReservation> {
  if (!IDENTITY_NAME.test(name))
    throw invalidArgument(
      `${JSON.stringify(name.length > 80 ? `${name.slice(0, 80)}…` : name)} is no lanplug.identity name (1-63 letters, digits, '.', '_', ':' or '-'); lanplug ls --identities lists the reservations`,
    );
  const r = store.getReservation(networkId, name);
  if (r === null)
    throw notFound(
      `network ${shortNetwork(networkId)} has no reservation for lanplug.identity=${name} (lanplug ls --identities lists them)`,
    );
  if (r.endpointId !== null && store.getEndpoint(networkId, r.endpointId) !== null)
    throw conflict(
      `lanplug.identity=${name} on network ${shortNetwork(networkId)} is held by endpoint ${r.endpointId.slice(0, 12)}: remove its container first (docker rm -f), then forget it`,
    );
  await dropReservation(store, book, r);
  recordEvent('identity.forgotten', { network: shortNetwork(networkId), identity: name });
  return r;
}

/**
 * The IPAM's ReleasePool: the network is being removed (Docker sends it beside the driver's
 * DeleteNetwork, which drops the reservations keeping no claim), and the reservations keeping claims
 * in the pool go now, their claims freed. A shared pool other hosts still use keeps this host's claims
 * when it leaves, and nothing else would free them (the orphan check looks at the pools of networks
 * here); a single host's pool takes its claims with it, and a network made again on the subnet makes
 * a pool of the same id, which the old claims must not reach.
 */
export async function releasePoolReservations(
  store: IdentityStore,
  book: AddressBook,
  poolId: string,
  log: Logger,
): Promise<void> {
  for (const r of store.listReservations()) {
    if (!r.kept.some((k) => k.poolId === poolId)) continue;
    await dropReservation(store, book, r);
    log.info('identity reservation dropped with its pool', { network: shortNetwork(r.networkId), identity: r.name });
  }
}

/** The claims first, then the row: a failure to free a claim leaves the reservation to try again. */
async function dropReservation(store: IdentityStore, book: AddressBook | null, r: IdentityReservation): Promise<void> {
  if (book !== null) for (const k of r.kept) await book.release(k.poolId, parseAddress(k.address));
  store.deleteReservation(r.networkId, r.name);
}
