/**
 * The endpoint service: what a network and its endpoints go through, for
 * every address source a network can have — Docker's IPAM (the addresses
 * checked: never this host's, and asked of the LAN per the network's
 * policy), the lanplug IPAM driver (checked at RequestAddress already), DHCP
 * asked by the network driver (`-o dhcp=true`), DHCP asked by the
 * lanplug-dhcp IPAM driver (the leases taken over), and for CNI attachments
 * ranges (checked on the LAN), shared pools on etcd (claimed there first, then
 * checked on the LAN) or DHCP (`lanplug-dhcp`). Front ends translate their
 * wire format into one call here and the answer back; nothing else.
 *
 * Every wait of the endpoint path is in this file, dhcp-endpoints.ts, dhcp-attachments.ts and
 * shared-attachments.ts,
 * and every request waits for those it must not overlap (NetworkQueue):
 * while a CreateEndpoint waits for the LAN, its Join, a DeleteEndpoint of it
 * or a DeleteNetwork of its network waits for it, so that no request sees
 * another's half-done state; other endpoints' requests go on beside it.
 * Below this floor everything is synchronous.
 */
import type {
  CreateEndpointRequest,
  CreateEndpointResult,
  CreateNetworkRequest,
  EndpointRef,
  JoinRef,
  JoinResult,
} from '../driver/requests';
import type { NetworkDriver } from '../driver/network-driver';
import type { EndpointRecord, DriverKind } from '../model/network';
import {
  ADVICE_DEFAULT_IPAM,
  ADVICE_EXPLICIT,
  HOST_ADVICE_DEFAULT_IPAM,
  type LanCheck,
  type LanConflicts,
} from '../lan/conflicts';
import type { AttachNetwork, AttachRequest, Attached } from '../driver/attach-request';
import { attachmentId, cniNetworkId } from '../driver/attachment-ids';
import type { SandboxAttachments } from '../driver/sandbox-attachments';
import { isNoRoom, LanplugError } from '../errors';
import { randomMac } from '../ipam/mac';
import type { RangeAllocation } from '../ipam/ranges';
import type { Logger } from '../log';
import type { DhcpAttachments } from './dhcp-attachments';
import type { DhcpEndpoints } from './dhcp-endpoints';
import { NetworkQueue } from './queue';
import type { SharedAttachmentPools } from './shared-attachments';

/** Addresses a CNI range chooses in a row before an ADD gives up (each the LAN was seen using is skipped). */
const ATTACH_TRIES = 4;

/**
 * The last refusal of a CNI ADD that gave up, told as what it likely is when one device answered
 * for every address it tried: a router answering for the whole subnet (proxy ARP) would refuse
 * every ADD, whichever address the range chose (a Docker network goes on to ONE_DEVICE_STREAK).
 */
function oneDeviceHint(lan: LanConflicts, check: LanCheck, err: LanplugError): LanplugError {
  const streak = lan.streakOn(check, 4) ?? lan.streakOn(check, 6);
  if (streak === null || streak.addresses.length < ATTACH_TRIES || err.message.startsWith('one device answers'))
    return err;
  const tried = streak.addresses.slice(-ATTACH_TRIES).join(', ');
  return new LanplugError(
    'Conflict',
    `${err.message}; one device, ${streak.mac}, answered for each of the ${ATTACH_TRIES} addresses tried (${tried}): if it answers for every address (a router with proxy ARP for the subnet), turn that off; if it does hold them, give a rangeStart past them`,
  );
}

export class EndpointService {
  private readonly queue = new NetworkQueue();
  /**
   * Removals Docker asked for while the state directory had no room to record them (its file system
   * full). Docker forgets an endpoint or a network whatever lanplug answers, so the row lanplug could
   * not drop kept its address and MAC until the periodic check found Docker no longer knew it (up to
   * --recheck-interval plus --grace-seconds): meanwhile the next container Docker gave that address
   * was refused ("MAC address ... is already used by endpoint ..."), also once there was room again.
   * An owed removal is made first thing in the next request that records something, which fails with
   * the same one line while there is still no room. It runs there synchronously, not through the
   * queue: nothing of an object Docker has forgotten waits in the queue, and a request that waited in
   * its slot for another slot could wait for itself.
   */
  private readonly owed = new Map<string, () => void>();

  constructor(
    private readonly driver: NetworkDriver,
    private readonly log: Logger,
    /** The LAN checks; null: none (tests of the driver alone). */
    private readonly lan: LanConflicts | null,
    /** DHCP endpoints; null where no DHCP network can exist (a managed plugin refuses them at create). */
    private readonly dhcp: DhcpEndpoints | null,
    /** CNI attachments; null where no CNI front end runs. */
    private readonly attachments: SandboxAttachments | null = null,
    /** CNI attachments' DHCP leases (`lanplug-dhcp`); null where none can be had. */
    private readonly leased: DhcpAttachments | null = null,
    /** CNI attachments' claims in the shared pools; null where no CNI front end runs. */
    private readonly shared: SharedAttachmentPools | null = null,
  ) {}

  createNetwork(request: CreateNetworkRequest): Promise<void> {
    return this.queue.forNetwork(request.networkId, () => {
      this.settleOwed();
      this.driver.createNetwork(request);
      // Its first addresses are asked about now: the `docker run` that follows a `network create` finds them known.
      this.lan?.networkAdded();
    });
  }

  /** Idempotent. Every lease on the network goes back to its server, then the network's links and rows go. */
  deleteNetwork(networkId: string): Promise<void> {
    return this.queue.forNetwork(networkId, () =>
      this.owing(`network ${networkId}`, () => {
        this.dhcp?.releaseNetwork(networkId);
        this.driver.deleteNetwork(networkId);
      }),
    );
  }

  /**
   * The endpoint recorded with its addresses: from DHCP when the network's server chooses them,
   * else as Docker gave them, once none is this host's and the LAN uses none (per the network's policy).
   */
  createEndpoint(kind: DriverKind, request: CreateEndpointRequest): Promise<CreateEndpointResult> {
    return this.queue.forEndpoint(request.networkId, request.endpointId, async () => {
      this.settleOwed();
      if (this.dhcp?.serves(kind, request.networkId) === true) return this.dhcp.createEndpoint(kind, request);
      const check = this.lan === null ? null : this.driver.addressCheck(kind, request);
      if (this.lan !== null && check !== null)
        await this.lan
          .requireUsable(check, { host: HOST_ADVICE_DEFAULT_IPAM, lan: ADVICE_DEFAULT_IPAM })
          .catch((err: unknown) => {
            throw this.driver.explainLanCheckFailure(request.networkId, err);
          });
      return this.driver.createEndpoint(kind, request);
    });
  }

  /** The endpoint's link, ready for the runtime to move into the container; with DHCP, the server's router. */
  join(kind: DriverKind, ref: JoinRef): Promise<JoinResult> {
    return this.queue.forEndpoint(ref.networkId, ref.endpointId, () => {
      const answer = this.driver.join(kind, ref.networkId, ref.endpointId, { sandboxKey: ref.sandboxKey });
      return this.dhcp === null ? answer : this.dhcp.joined(kind, ref, answer);
    });
  }

  /** The container stops: its lease goes back to the server, whatever else failed. */
  leave(ref: EndpointRef): Promise<void> {
    return this.queue.forEndpoint(ref.networkId, ref.endpointId, () => {
      try {
        this.driver.leave(ref.networkId, ref.endpointId);
      } finally {
        this.dhcp?.release(ref.networkId, ref.endpointId, 'container stopped');
      }
    });
  }

  /** Idempotent. A lease still held (the container never started: no Join, no Leave) goes first. */
  deleteEndpoint(ref: EndpointRef): Promise<void> {
    return this.queue.forEndpoint(ref.networkId, ref.endpointId, () =>
      this.owing(`endpoint ${ref.networkId}/${ref.endpointId}`, () => {
        this.dhcp?.release(ref.networkId, ref.endpointId, 'endpoint removed');
        this.driver.deleteEndpoint(ref.networkId, ref.endpointId);
      }),
    );
  }

  /**
   * Makes a removal; one the state directory had no room to record is owed (see `owed`), and its
   * failure answered. Logged when it becomes owed and when an owed one is made: between the two,
   * the row holds its address and MAC, and the log is where an operator learns why.
   */
  private owing(key: string, removal: () => void): void {
    const wasOwed = this.owed.has(key);
    try {
      removal();
      this.owed.delete(key);
      if (wasOwed) this.log.info('owed removal made', { removal: key });
    } catch (err) {
      if (isNoRoom(err)) {
        this.owed.set(key, removal);
        if (!wasOwed)
          this.log.warn('removal owed: the state directory had no room to record it; made at the next request', {
            removal: key,
            error: err instanceof Error ? err.message : String(err),
          });
      } else {
        this.owed.delete(key);
        if (wasOwed)
          this.log.warn('owed removal failed; left to reconcile and the periodic check', {
            removal: key,
            error: err instanceof Error ? err.message : String(err),
          });
      }
      throw err;
    }
  }

  /**
   * The owed removals, made now; throws while there is still no room. Any other failure of one is the
   * driver's to keep (a leftover for reconcile) and the periodic check's to finish: it does not fail
   * the request that came after.
   */
  private settleOwed(): void {
    for (const [key, removal] of [...this.owed]) {
      try {
        this.owing(key, removal);
      } catch (err) {
        if (isNoRoom(err)) throw err;
      }
    }
  }

  /**
   * A CNI ADD: the attachment's addresses claimed and recorded, asked of the LAN as Docker's are
   * (never this host's; the LAN per the network's policy), then the link made in the namespace. An
   * address the range chose that the LAN uses is skipped for the next (the LAN's answer is
   * remembered); one the runtime asked for is refused in one line.
   */
  attach(asked: AttachRequest): Promise<Attached> {
    const attachments = this.requireAttachments();
    // A shared claim carries the MAC (as a Docker endpoint's): chosen before it, not by prepare.
    const request =
      asked.shared && asked.mac === null && asked.driver === 'macvlan' ? { ...asked, mac: randomMac() } : asked;
    const networkId = cniNetworkId(request.networkName);
    const endpointId = attachmentId(request.networkName, request.sandbox.containerId, request.sandbox.ifname);
    return this.queue.forEndpoint(networkId, endpointId, async () => {
      this.settleOwed();
      // The DHCP server's address is checked on the LAN by the lease keeper, before it is acknowledged as used.
      if (request.dhcp) return this.requireLeased().attach(request);
      const shared = request.shared ? this.requireShared() : null;
      for (let attempt = 1; ; attempt++) {
        let claims: RangeAllocation[] | null = null;
        if (shared !== null) {
          attachments.hold(request.networkName);
          claims = await shared.claim(request, request.mac);
        }
        const giveBack = async (): Promise<void> => {
          if (shared !== null && claims !== null) await shared.release(claims);
        };
        let prepared;
        try {
          prepared = attachments.prepare(request, claims);
        } catch (err) {
          await giveBack();
          throw err;
        }
        const check =
          this.lan === null
            ? null
            : this.driver.addressCheckOf(request.driver, networkId, attachments.claimedAddresses(prepared));
        // Recorded before the LAN is asked: until made or undone, the LAN watch must not defend these addresses.
        const confirmed =
          this.lan?.confirming(networkId, attachments.claimedAddresses(prepared)) ?? ((): void => undefined);
        try {
          if (this.lan !== null && check !== null)
            await this.lan
              .requireUsable(check, { host: () => 'ask for another address', lan: ADVICE_EXPLICIT })
              .catch((err: unknown) => {
                throw this.driver.explainLanCheckFailure(networkId, err);
              });
          confirmed();
        } catch (err) {
          // Both synchronous: no frame is heard between the row going and the mark ending, even if the undo throws.
          try {
            attachments.abandon(prepared);
          } finally {
            confirmed();
          }
          await giveBack();
          const chosen = request.requestedIps.length === 0;
          if (!chosen || !(err instanceof LanplugError) || err.code !== 'Conflict') throw err;
          if (attempt < ATTACH_TRIES) continue;
          throw this.lan === null || check === null || check.lan === null
            ? err
            : oneDeviceHint(this.lan, check.lan, err);
        }
        try {
          return attachments.complete(prepared);
        } catch (err) {
          await giveBack();
          throw err;
        }
      }
    });
  }

  /**
   * A network declared before its first attachment (Podman's `network create`): what its first
   * attach would refuse about the network itself, refused now; nothing is recorded or made.
   */
  checkAttachmentNetwork(network: AttachNetwork): Promise<void> {
    const attachments = this.requireAttachments();
    return this.queue.forNetwork(cniNetworkId(network.networkName), () => {
      if (network.shared) this.requireShared().check(network);
      attachments.checkNetwork(network);
    });
  }

  /**
   * A CNI DEL: idempotent, best effort (driver/sandbox-attachments.ts); a DHCP lease goes back to its
   * server. `onRemoved` is told once the attachment's record is gone (a repeated DEL finds none).
   */
  detach(
    networkName: string,
    containerId: string,
    ifname: string,
    netns: string | null,
    onRemoved?: () => void,
  ): Promise<void> {
    const attachments = this.requireAttachments();
    return this.queue.forEndpoint(cniNetworkId(networkName), attachmentId(networkName, containerId, ifname), () => {
      attachments.detach(networkName, containerId, ifname, netns, onRemoved);
      // A shared-pool address is back in etcd before the runtime hears the DEL is done.
      return attachments.settled();
    });
  }

  /** A CNI CHECK: the link as ADD made it, and on a DHCP network the lease held. */
  checkAttachment(networkName: string, containerId: string, ifname: string, netns: string): Promise<void> {
    const attachments = this.requireAttachments();
    const networkId = cniNetworkId(networkName);
    const endpointId = attachmentId(networkName, containerId, ifname);
    return this.queue.forEndpoint(networkId, endpointId, () => {
      attachments.check(networkName, containerId, ifname, netns);
      this.leased?.requireHeld(networkId, endpointId, `container ${containerId}'s ${ifname} on network ${networkName}`);
    });
  }

  /** A CNI GC: every attachment of the network but those `keep` names goes, with its lease; alone on the network. */
  collectAttachments(networkName: string, keep: readonly { containerId: string; ifname: string }[]): Promise<number> {
    const attachments = this.requireAttachments();
    return this.queue.forNetwork(cniNetworkId(networkName), async () => {
      const removed = attachments.collect(networkName, keep);
      await attachments.settled();
      return removed;
    });
  }

  /** CNI STATUS: ready for an ADD when the parent is there and up. Waits for nothing. */
  attachmentsReady(options: Readonly<Record<string, string>>): void {
    this.requireAttachments().ready(options);
  }

  private requireLeased(): DhcpAttachments {
    if (this.leased === null) throw new LanplugError('Internal', 'no DHCP client runs for CNI in this daemon');
    return this.leased;
  }

  private requireShared(): SharedAttachmentPools {
    if (this.shared === null) throw new LanplugError('Internal', 'no shared pools serve CNI in this daemon');
    return this.shared;
  }

  private requireAttachments(): SandboxAttachments {
    if (this.attachments === null) throw new LanplugError('Internal', 'no CNI front end runs in this daemon');
    return this.attachments;
  }

  /** Read only, and never waits: what Docker shows in `docker network inspect`. */
  endpointInfo(ref: EndpointRef): EndpointRecord | null {
    return this.driver.endpointInfo(ref.networkId, ref.endpointId);
  }
}
