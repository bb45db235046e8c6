/**
 * Endpoints: a record per container on a network, its link's lifetime
 * around it (made at Join, or at CreateEndpoint for a DHCP endpoint, which
 * asks for its address on it; gone at DeleteEndpoint, through the reaper).
 * A DHCP endpoint is made in two halves around the exchange the endpoint
 * service runs between them (endpoint/dhcp-endpoints.ts).
 */
import * as fs from 'node:fs';
import { dirname } from 'node:path';
import { conflict, invalidArgument, LanplugError, withContext } from '../errors';
import { crashPoint } from '../crash-points';
import { macFromIpv4, randomMac } from '../ipam/mac';
import type { LinkInfo } from '../link/link';
import {
  addressesOf,
  mergeLearnedDns,
  shortId,
  type DriverKind,
  type EndpointRecord,
  type LearnedDns,
  type NetworkSpec,
  type Stamped,
} from '../model/network';
import type { IpPrefix } from '../net/address';
import { addressHeldConflict } from '../state/store';
import { parseMac } from '../net/mac';
import { quietAskingLink } from './asking-links';
import { checkIds, inNetwork, requireNetwork, type DriverContext } from './driver-context';
import { createEndpointLinkBesideParked, endpointLeftover } from './endpoint-links';
import { removeRoutes, wantedRoutes } from './host-access';
import { recordHeld, refuseReservedAddress, releaseHolder } from '../ipam/reservations';
import {
  clientIdFromIdentity,
  duidFromIdentity,
  endpointIdentity,
  macFromIdentity,
  type EndpointIdentity,
} from './identity';
import { checkDockerId, endpointLinkName } from './names';
import { removeLeftInSandbox } from './sandbox';
import { ensureParent } from './parent';
import type { CreateEndpointRequest, CreateEndpointResult } from './requests';

/** A DHCP endpoint between its two halves: recorded, its link up in the daemon's namespace, no address yet. */
export interface PreparedEndpoint {
  spec: NetworkSpec;
  endpoint: EndpointRecord;
  link: LinkInfo;
}

export function createEndpoint(
  ctx: DriverContext,
  driver: DriverKind,
  request: CreateEndpointRequest,
): CreateEndpointResult {
  checkDockerId(request.endpointId, 'endpoint id');
  const { spec } = requireNetwork(ctx, request.networkId, driver);
  const requestedMac = request.mac === null ? null : parseMac(request.mac);
  if (spec.mode.kind === 'ipvlan' && requestedMac !== null) {
    throw invalidArgument('ipvlan interfaces do not support custom mac address assignment');
  }
  if (spec.mode.kind === 'macvlan' && spec.mode.mode === 'passthru') {
    const others = ctx.store.listEndpoints(spec.networkId).filter((e) => e.endpointId !== request.endpointId);
    if (others.length > 0) {
      throw conflict(
        `macvlan network ${shortId(spec.networkId)} is in mode passthru and parent ${spec.parent.name} is already given to endpoint ${shortId(others[0]?.endpointId ?? '')}; passthru allows one container per parent`,
      );
    }
  }
  const identity = endpointIdentity(request.endpointOptions);
  if (identity !== null) refuseIdentityHeld(ctx, request, identity);
  const named = identity === null ? null : macFromIdentity(identity.name);
  const mac = spec.mode.kind === 'ipvlan' ? null : (requestedMac ?? named ?? deriveMac(request));
  const record: EndpointRecord = {
    networkId: spec.networkId,
    endpointId: request.endpointId,
    linkName: endpointLinkName(request.endpointId),
    mac,
    ipv4: request.ipv4,
    ipv6: request.ipv6,
    ...(identity === null ? {} : { identity: identity.name }),
    ...(request.sandbox === undefined ? {} : { sandbox: request.sandbox }),
  };
  // An address held twice in the network: found by address, whatever MAC each endpoint has (a name's or
  // the user's MAC does not follow the address, so the store's unique MAC would not catch it). ipvlan: the
  // kernel refuses an address another port of the parent holds.
  if (mac !== null) refuseAddressHeld(ctx, spec, record);
  refuseReservedAddress(ctx.store, reservedView(record), identity?.name ?? null);
  ctx.store.transaction(() => {
    ctx.store.putEndpoint(record);
    recordReservation(ctx, record);
  });
  crashPoint('create-endpoint:recorded');
  return { assignedMac: requestedMac === null ? mac : null };
}

/**
 * Refuses `record` when another endpoint of its network holds one of its addresses. That holder may
 * be an endpoint Docker forgot: Docker forgets an endpoint whose DeleteEndpoint failed (lanplug was
 * restarting when its container was removed) and gives its address to the next container. When the
 * holder's container is provably gone, its row is dropped instead (dropIfForgotten) and the new
 * endpoint takes the address; otherwise the one-line refusal stands (a live holder: Docker gave the
 * address out twice), and the periodic check, which asks dockerd, drops a forgotten row later.
 */
function refuseAddressHeld(ctx: DriverContext, spec: NetworkSpec, record: EndpointRecord): void {
  const wanted = new Set(addressesOf(record).map((a) => a.text));
  for (const other of ctx.store.endpointsHoldingAddressesOf(spec.networkId, record)) {
    if (other.endpointId === record.endpointId) continue;
    const address = addressesOf(other).find((a) => wanted.has(a.text));
    if (address !== undefined && !dropIfForgotten(ctx, spec, other, record.endpointId))
      throw addressHeldConflict(address.text, other);
  }
}

/**
 * Drops `holder`'s row (with its teardown, as its DeleteEndpoint would have) when its container is
 * provably gone (containerGone) and its network takes no addresses from DHCP (the holder's lease may
 * be the new container's: the same MAC is the same client; the lease keeper's watchdog settles
 * those); true when it did.
 */
function dropIfForgotten(
  ctx: DriverContext,
  spec: NetworkSpec,
  holder: EndpointRecord & Stamped,
  forEndpointId: string,
): boolean {
  if (spec.dhcp !== null || !containerGone(ctx, holder)) return false;
  ctx.log.warn(
    "dropped the row of an endpoint Docker forgot (its container's sandbox is gone): what it held goes to a new endpoint",
    {
      forgotten: shortId(holder.endpointId),
      endpoint: shortId(forEndpointId),
      sandbox: holder.dockerSandboxKey,
    },
  );
  try {
    deleteEndpoint(ctx, holder.networkId, holder.endpointId);
  } catch (undo) {
    // Its row is gone and its link recorded as a leftover (deleteEndpoint does both first): the
    // reconciler finishes it, and the new endpoint need not fail for it.
    ctx.log.warn("could not remove a forgotten endpoint's link; left to the periodic check", {
      forgotten: shortId(holder.endpointId),
      error: String(undo),
    });
  }
  return true;
}

/**
 * Whether no container can be using `endpoint` any more, on three pieces of
 * evidence. It was made long enough ago (the daemon's --grace-seconds, 60 s by default): Docker calls
 * Join before it creates the sandbox's file (at runc's hook, when it moves the
 * link in), so a container still starting has no file yet. Docker has
 * removed the sandbox it was joined to: the namespace's file is gone from a
 * directory lanplug can see (where it cannot see Docker's directory, nothing
 * is concluded). And its link is back in the daemon's namespace, lanplug's
 * with its MAC (Docker hands it back at Leave, before it deletes the
 * sandbox); a link still in a namespace, or gone with one, is not concluded.
 */
function containerGone(ctx: DriverContext, endpoint: EndpointRecord & Stamped): boolean {
  const sandbox = endpoint.dockerSandboxKey;
  if (sandbox === undefined) return false; // never joined: Docker may still join it
  if (Date.now() - endpoint.createdAt < ctx.forgottenAfterMs) return false;
  if (!fs.existsSync(dirname(sandbox)) || fs.existsSync(sandbox)) return false;
  const link = ctx.rtnl.getLink(endpoint.linkName);
  return link !== null && ctx.rtnl.owns(link) && (endpoint.mac === null || link.mac === endpoint.mac);
}

/**
 * Idempotent: a link or record already gone is success. The row is replaced
 * by a leftover first, so that a crash or a refused delete leaves the link
 * to the reconciler rather than a row Docker has forgotten.
 */
export function deleteEndpoint(ctx: DriverContext, networkId: string, endpointId: string): void {
  checkIds(networkId, endpointId);
  // Docker may delete without a Leave first (a dockerd restarted meanwhile): the watch ends here then.
  ctx.slaac?.cancel(endpointId);
  const { store } = ctx;
  const network = store.getNetwork(networkId);
  const endpoint = store.getEndpoint(networkId, endpointId);
  // Docker hands the link back to our namespace after Leave; it is deleted here, as Docker's own driver does.
  const linkName = endpoint?.linkName ?? endpointLinkName(endpointId);
  const leftover = endpointLeftover({ networkId, endpointId, linkName }, 'endpoint removed');
  store.transaction(() => {
    store.deleteEndpoint(networkId, endpointId);
    store.putLeftover(leftover);
    // Its identity's reservation stays, idle from now (ipam/reservations.ts).
    releaseHolder(store, networkId, endpointId, Date.now());
  });
  crashPoint('delete-endpoint:row-dropped');
  if (endpoint !== null) ctx.announcer?.withdraw(addressesOf(endpoint));
  try {
    if (network !== null && network.spec.hostAccess !== null && endpoint !== null)
      removeRoutesQuietly(ctx, network.spec, endpoint);
    const link = ctx.rtnl.getLink(linkName);
    if (link === null) {
      const sandboxKey = endpoint?.dockerSandboxKey;
      if (endpoint !== null && sandboxKey !== undefined)
        removeFromDockerSandbox(ctx, network?.spec ?? null, endpoint, sandboxKey);
      store.deleteLeftover(linkName);
    }
    // The leftover record goes once the link is: at once, or when the reaper's batch is done.
    else ctx.remover.remove(link, () => store.deleteLeftover(linkName));
  } catch (err) {
    const failure =
      network === null ? withContext(`endpoint ${shortId(endpointId)}`, err) : inNetwork(network.spec, err);
    store.putLeftover({ ...leftover, reason: failure.message });
    throw failure;
  }
}

/** The link is not back in our namespace: it may still be in a sandbox a killed dockerd left (sandbox.ts). */
function removeFromDockerSandbox(
  ctx: DriverContext,
  spec: NetworkSpec | null,
  endpoint: EndpointRecord,
  sandboxKey: string,
): void {
  const what = { endpoint: shortId(endpoint.endpointId), sandbox: sandboxKey };
  try {
    const parent = spec === null ? null : ctx.rtnl.getLink(spec.parent.name);
    const left = removeLeftInSandbox(sandboxKey, {
      group: ctx.rtnl.ownGroup,
      mac: endpoint.mac,
      addresses: addressesOf(endpoint),
      parentIndex: parent?.index ?? null,
    });
    if (left.kind === 'removed')
      ctx.log.warn("removed a deleted endpoint's link from the sandbox Docker left behind", {
        ...what,
        link: left.name,
      });
    else if (left.kind === 'in use')
      ctx.log.warn("a deleted endpoint's link is still in a sandbox a process lives in; left there", {
        ...what,
        link: left.name,
      });
  } catch (err) {
    // Process-wide trouble (the daemon could not return to its own namespace) is not for a warning.
    if (err instanceof LanplugError && err.code === 'Internal') throw err;
    // Otherwise best effort: Docker has deleted the endpoint whatever lanplug answers.
    ctx.log.warn("could not look for a deleted endpoint's link in its sandbox", { ...what, error: String(err) });
  }
}

/**
 * The first half of a DHCP CreateEndpoint: the endpoint recorded without an
 * address, and its link made now (not at Join) in the daemon's namespace and
 * set up, for the client to ask for an address on. `mac` null: ipvlan (the
 * parent's). Undone by deleteEndpoint.
 */
export function prepareDhcpEndpoint(
  ctx: DriverContext,
  driver: DriverKind,
  request: CreateEndpointRequest,
  mac: string | null,
  identity: EndpointIdentity | null = null,
): PreparedEndpoint {
  checkDockerId(request.endpointId, 'endpoint id');
  const { spec } = requireNetwork(ctx, request.networkId, driver);
  if (spec.mode.kind === 'ipvlan' && request.mac !== null) {
    throw invalidArgument('ipvlan interfaces do not support custom mac address assignment');
  }
  if (identity !== null) refuseIdentityHeld(ctx, request, identity);
  const endpoint: EndpointRecord = {
    networkId: spec.networkId,
    endpointId: request.endpointId,
    linkName: endpointLinkName(request.endpointId),
    mac,
    ipv4: null,
    ipv6: request.ipv6,
    ...(identity === null ? {} : { identity: identity.name }),
  };
  ctx.store.putEndpoint(endpoint);
  try {
    const parent = ensureParent(ctx.rtnl, spec.parent, spec.mtu);
    const link = createEndpointLinkBesideParked(ctx, spec, endpoint, parent);
    // Up in the daemon's namespace to ask on: as quiet there as lanplug-dhcp's asking links.
    quietAskingLink(ctx.rtnl, link, spec.dhcp?.ipv6 === true ? 6 : 4);
    ctx.rtnl.setUp(link);
    return { spec, endpoint, link };
  } catch (err) {
    const failure = inNetwork(spec, err);
    try {
      deleteEndpoint(ctx, spec.networkId, request.endpointId);
    } catch (undo) {
      ctx.log.error('could not undo a failed DHCP endpoint', {
        endpoint: shortId(request.endpointId),
        error: String(undo),
      });
    }
    throw failure;
  }
}

/** The second half: the addresses the servers granted, recorded on the endpoint. */
export function completeDhcpEndpoint(
  ctx: DriverContext,
  prepared: PreparedEndpoint,
  ipv4: IpPrefix | null,
  ipv6: IpPrefix | null,
): EndpointRecord {
  const endpoint = {
    ...prepared.endpoint,
    ipv4: ipv4 ?? prepared.endpoint.ipv4,
    ipv6: ipv6 ?? prepared.endpoint.ipv6,
  };
  ctx.store.transaction(() => {
    ctx.store.putEndpoint(endpoint);
    recordReservation(ctx, endpoint);
  });
  return endpoint;
}

/** An endpoint's addresses as a reservation names them: without their prefix length. */
function reservedView(record: EndpointRecord): { networkId: string; ipv4: string | null; ipv6: string | null } {
  return {
    networkId: record.networkId,
    ipv4: record.ipv4?.address.text ?? null,
    ipv6: record.ipv6?.address.text ?? null,
  };
}

/** An endpoint with an identity: its reservation on the network is what it holds now (ipam/reservations.ts). */
function recordReservation(ctx: DriverContext, record: EndpointRecord): void {
  const name = record.identity;
  if (name === undefined) return;
  recordHeld(
    ctx.store,
    {
      ...reservedView(record),
      endpointId: record.endpointId,
      name,
      mac: record.mac,
      clientId: clientIdFromIdentity(name),
      duid: duidFromIdentity(name),
    },
    Date.now(),
  );
}

/** A DHCP server moved the container: the endpoint's address follows (the LAN watch defends what endpoints hold). */
export function moveEndpointAddress(
  ctx: DriverContext,
  networkId: string,
  endpointId: string,
  address: IpPrefix,
): void {
  const endpoint = ctx.store.getEndpoint(networkId, endpointId);
  // A DHCPv6 address `-o ipv6=slaac` took for the router's M flag was never the endpoint's (Docker's): its lease shows it.
  const held = address.address.family === 4 ? endpoint?.ipv4 : endpoint?.ipv6;
  if (endpoint === null || held === null || held === undefined) return;
  ctx.store.putEndpoint(address.address.family === 4 ? { ...endpoint, ipv4: address } : { ...endpoint, ipv6: address });
}

/** DNS the LAN offered an `-o ipv6=slaac` endpoint's container, added to what its start learnt so far (`lanplug ls`). */
export function noteLearnedDns(ctx: DriverContext, networkId: string, endpointId: string, dns: LearnedDns): void {
  const endpoint = ctx.store.getEndpoint(networkId, endpointId);
  if (endpoint === null) return;
  ctx.store.putEndpoint({ ...endpoint, learnedDns: mergeLearnedDns(endpoint.learnedDns, dns) });
}

/** A route that will not go is only logged: reconcile compares the routes with the endpoints. */
function removeRoutesQuietly(ctx: DriverContext, spec: NetworkSpec, endpoint: EndpointRecord): void {
  try {
    removeRoutes(ctx.rtnl, spec, wantedRoutes(spec, [endpoint]));
  } catch (err) {
    ctx.log.warn('could not remove a host-access route; reconcile retries', {
      endpoint: shortId(endpoint.endpointId),
      error: String(err),
    });
  }
}

/**
 * One identity is one device to the LAN (one MAC, one DHCP client): a second live endpoint with it,
 * on this network or another of this host, is refused before anything is made. Docker retrying the
 * holder's own CreateEndpoint is not a second. Endpoints recorded before identities were (an older
 * lanplug's `lanplug.dhcp.id`) are found by the name's MAC.
 */
export function refuseIdentityHeld(
  ctx: DriverContext,
  request: Pick<CreateEndpointRequest, 'networkId' | 'endpointId'>,
  identity: EndpointIdentity,
): void {
  const mac = macFromIdentity(identity.name);
  const holder = ctx.store
    .listAllEndpoints()
    .find(
      (e) =>
        (e.identity === identity.name || (e.identity === undefined && e.mac === mac)) &&
        !(e.networkId === request.networkId && e.endpointId === request.endpointId),
    );
  if (holder === undefined) return;
  // The holder's container gone and Docker's DeleteEndpoint lost (lanplug restarting): the name is free.
  const holderSpec = ctx.store.getNetwork(holder.networkId)?.spec;
  if (holderSpec !== undefined && dropIfForgotten(ctx, holderSpec, holder, request.endpointId)) return;
  throw conflict(
    `--driver-opt ${identity.option}=${identity.name} is already used by endpoint ${shortId(holder.endpointId)} of network ${shortId(holder.networkId)}; give each container its own identity (lanplug gc drops an endpoint Docker no longer knows)`,
  );
}

/** Docker 20.10's rule: the MAC follows the IPv4 address; without one, a random local MAC. */
function deriveMac(request: CreateEndpointRequest): string {
  return request.ipv4 === null ? randomMac() : macFromIpv4(request.ipv4.address);
}
