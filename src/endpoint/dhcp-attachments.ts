/**
 * CNI attachments whose address comes from the LAN's DHCP server (`"ipam":
 * {"type": "lanplug-dhcp"}`): what a Docker `-o dhcp=true` endpoint gets,
 * for a pod. The attachment's two halves are the driver's
 * (LeasedAttachments.prepare / complete); between them the lease
 * keeper asks the server from inside the pod's namespace, on the pod's own
 * link, and checks the acknowledged address on the LAN (declined and asked
 * again when a device answers for it). From then on the lease is the
 * keeper's as any other: renewed from inside the namespace, released when
 * the attachment is removed (DEL, GC, a vanished namespace: the driver's
 * SandboxAttachments calls the keeper), or by the keeper's watchdog.
 *
 * Identity: client id 00+"<container id>/<ifname>", so that a DEL and ADD of
 * the same container (a restarted Podman container keeps its id) asks as the
 * same client and for its last address; the hostname is the container id's
 * first 12 characters (Podman's default hostname for a container). The MAC
 * follows the attachment as well, unless the configuration gives one
 * (SandboxAttachments: a hash of network, container id and interface): on
 * ipvlan every pod has the parent's, and the client id tells them apart.
 */
import { createHash } from 'node:crypto';
import { crashPoint } from '../crash-points';
import { notFound, withContext } from '../errors';
import type { LeaseKeeper } from '../dhcp/keeper';
import { stateAt } from '../dhcp/lease-state';
import type { Attached, AttachRequest, PreparedLease } from '../driver/attach-request';
import { isMacHeld, type LeasedAttachments } from '../driver/leased-attachments';
import type { NetworkDriver } from '../driver/network-driver';
import type { Logger } from '../log';
import { leaseOf, type DhcpIdentity, type Lease } from '../model/lease';
import { shortId, type Sandbox } from '../model/network';
import type { IpAddress } from '../net/address';
import { duidFromIdentity } from '../driver/identity';

/** DHCP option 61 holds at most 255 bytes: the type byte and 254 of the label. */
const CLIENT_LABEL_MAX = 254;
/** Without `timeout` in the configuration: as Docker's `-o dhcp=true` networks. */
const DEFAULT_TIMEOUT_MS = 10_000;
/** How long a held MAC is waited for (a link the kernel is removing goes within an RCU grace period or two). */
const MAC_FREE_TRIES = 10;
const MAC_FREE_WAIT_MS = 100;

export class DhcpAttachments {
  constructor(
    private readonly leased: LeasedAttachments,
    private readonly driver: NetworkDriver,
    private readonly keeper: LeaseKeeper,
    private readonly log: Logger,
  ) {}

  /**
   * The container's own MAC held on the parent is most often its last namespace's link on its way out
   * (a runtime that removed the namespace without a DEL): waited for a moment before a random MAC is
   * taken, since with a random one the old link, still answering for the address, would have the
   * container's own address declined as in use.
   */
  private async prepareWhenMacFree(request: AttachRequest): Promise<PreparedLease> {
    for (let tries = 0; tries < MAC_FREE_TRIES; tries++) {
      try {
        return this.leased.prepare(request, false);
      } catch (err) {
        if (!isMacHeld(err) || request.mac !== null) throw err;
      }
      await new Promise((resolve) => setTimeout(resolve, MAC_FREE_WAIT_MS));
    }
    return this.leased.prepare(request, true);
  }

  /** An ADD: the link in the namespace, a lease asked on it, the address configured; undone whole on a failure. */
  async attach(request: AttachRequest): Promise<Attached> {
    const prepared = await this.prepareWhenMacFree(request);
    const { networkId, endpointId, link } = prepared;
    const { sandbox } = request;
    const spec = this.driver.networkSpec(request.driver, networkId);
    const identity = attachmentIdentity(sandbox, link.mac, spec.mode.kind === 'ipvlan');
    let leases: Lease[] = [];
    let held = false;
    try {
      leases = await this.keeper.acquire(
        link,
        spec.parent.name,
        identity,
        {
          networkId,
          ipv4: true,
          ipv6: request.dhcp6,
          prefixLength6: 64,
          subnets4: this.driver.parentSubnets4(spec),
          netns: sandbox.netns,
        },
        spec.dhcp?.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      );
      const lease = leases.find((l) => l.family === 4);
      if (lease === undefined) throw notFound('the DHCP exchange returned no IPv4 lease');
      const lease6 = request.dhcp6 ? leases.find((l) => l.family === 6) : undefined;
      if (request.dhcp6 && lease6 === undefined) throw notFound('the DHCPv6 exchange returned no IPv6 lease');
      // Recorded with the pod's namespace before anything else is done with it: a daemon killed from here
      // on finds the lease at its start and renews it from the pod (its watchdog gives it back when the
      // namespace goes; the runtime's DEL after the failed ADD does). Recorded without it, a lease is one
      // "never joined", and was left unrenewed, then given back a minute later whatever the pod did.
      this.keeper.hold({
        networkId,
        endpointId,
        identity,
        leases,
        dockerAddresses: [lease, ...(lease6 === undefined ? [] : [lease6])].map((l) => l.address.address),
        sandboxKey: sandbox.netns,
        renewedAt: null,
        failures: 0,
        lastError: null,
      });
      held = true;
      crashPoint('cni-add:lease-recorded');
      const attached = this.leased.complete(prepared, lease.address, lease.router, lease6?.address ?? null);
      // Renewals run inside the pod's namespace from now on.
      this.keeper.joined(networkId, endpointId, sandbox.netns);
      return { ...attached, nameservers: uniqueAddresses([...lease.dns, ...(lease6?.dns ?? [])]) };
    } catch (err) {
      // Nothing stays behind a failed ADD: no lease (on the server or here), no link, no row.
      if (held) this.keeper.release(networkId, endpointId, 'CNI ADD failed');
      else this.keeper.giveBack(networkId, identity, leases);
      this.leased.abandon(prepared);
      throw withContext(`network cni:${request.networkName} on parent ${spec.parent.name}`, err);
    }
  }

  /** CHECK of an attachment on a DHCP network: its lease is held, and has not expired unrenewed. */
  requireHeld(networkId: string, endpointId: string, what: string): void {
    if ((this.driver.network(networkId)?.spec.dhcp ?? null) === null) return;
    const record = this.keeper.get(networkId, endpointId);
    const lease = record === null ? null : leaseOf(record, 4);
    if (record === null || lease === null)
      throw notFound(`${what} holds no DHCP lease any more (released); DEL and ADD it again`);
    const state = stateAt(lease, Date.now());
    if (state === 'expired')
      throw notFound(
        `${what}: its DHCP lease of ${lease.address.address.text} expired without an answer from the server (${record.lastError ?? 'no renewal'}); the server may give the address to another device`,
      );
    // Refused (a NAK, or a move the LAN check declined) and not replaced yet: the server no longer
    // counts the address as the pod's, so it is as unsafe as an expired one.
    if (state === 'refused')
      throw notFound(
        `${what}: the DHCP server refused the lease of ${lease.address.address.text} (${record.lastError ?? 'refused'}) and no new one was bound yet; the server may give the address to another device`,
      );
    this.log.debug('dhcp lease held', { endpoint: shortId(endpointId), address: lease.address.address.text });
  }
}

/** The DHCPv4 then the DHCPv6 server's resolvers, each once. */
function uniqueAddresses(addresses: readonly IpAddress[]): IpAddress[] {
  const byText = new Map<string, IpAddress>();
  for (const a of addresses) if (!byText.has(a.text)) byText.set(a.text, a);
  return [...byText.values()];
}

/** What the server knows a pod's attachment by: the same for the same container and interface. */
export function attachmentIdentity(sandbox: Sandbox, mac: string, sharedMac: boolean): DhcpIdentity {
  const label = clientLabel(sandbox.containerId, sandbox.ifname);
  return {
    mac,
    clientId: '00' + Buffer.from(label).toString('hex'),
    duid: duidFromIdentity(label),
    iaid: 1,
    stable: true,
    hostname: hostnameOf(sandbox.containerId),
    broadcast: sharedMac,
  };
}

/** "<container id>/<ifname>"; a container id too long for option 61 is replaced by its SHA-256. */
function clientLabel(containerId: string, ifname: string): string {
  const label = `${containerId}/${ifname}`;
  if (label.length <= CLIENT_LABEL_MAX) return label;
  return `${createHash('sha256').update(containerId).digest('hex')}/${ifname}`;
}

/** The container id's first 12 characters, as a hostname label (letters, digits, inner '-'); null if none is left. */
function hostnameOf(containerId: string): string | null {
  const name = containerId
    .slice(0, 12)
    .replace(/[^A-Za-z0-9-]/g, '-')
    .replace(/^-+|-+$/g, '');
  return name === '' ? null : name;
}
