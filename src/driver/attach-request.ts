/**
 * The words of a CNI or Podman attachment: what a front end (api/cni,
 * api/netavark) asks for, what an ADD holds between its two halves, and what
 * it answers. Apart from the code that makes attachments (sandbox-attachments.ts,
 * leased-attachments.ts) so that the front ends and the endpoint service can
 * speak of an attachment without importing how one is made.
 */
import type { AddressRange } from '../model/ipam';
import type { DriverKind, Sandbox } from '../model/network';
import type { IpAddress, IpPrefix } from '../net/address';
import type { RangeAllocation } from '../ipam/ranges';
import type { SandboxRoute } from './sandbox';

/** The network half of an ADD: what the lanplug network of an attachment is made from. */
export interface AttachNetwork {
  /** The CNI network configuration's `name` (a Podman network's: `podman:<name>`). */
  networkName: string;
  driver: DriverKind;
  /** The configuration in `-o` vocabulary; without a parent the host's default-route link is used. */
  options: Readonly<Record<string, string>>;
  /** As `--aux-address`: never handed out; `host`/`host6` are the host's own with host access. */
  auxAddresses: ReadonlyMap<string, IpAddress>;
  /** One address from each set; none with `dhcp`. */
  rangeSets: readonly (readonly AddressRange[])[];
  /** The address comes from the LAN's DHCP server (the options carry `dhcp=true`). */
  dhcp: boolean;
  /** With `dhcp`: an IPv6 address from the LAN's DHCPv6 server too. */
  dhcp6: boolean;
  /**
   * The addresses come from the shared pools on etcd (`--store etcd://…`), each range set one pool as
   * the Docker IPAM driver names it (`--subnet`, `--ip-range`): claimed by the endpoint service before
   * `prepare` (endpoint/shared-attachments.ts), given back through SharedClaims.
   */
  shared: boolean;
}

export interface AttachRequest extends AttachNetwork {
  /** Routes in the container; a null gateway is the gateway of the address of the same family. */
  routes: readonly SandboxRoute[];
  mac: string | null;
  requestedIps: readonly IpAddress[];
  sandbox: Sandbox;
}

/** An attachment between its two halves (SandboxAttachments.prepare and complete). */
export interface PreparedAttachment {
  request: AttachRequest;
  networkId: string;
  endpointId: string;
  claims: RangeAllocation[];
  assignedMac: string | null;
}

export interface Attached {
  ifname: string;
  mac: string;
  netns: string;
  /** The gateway is null where a DHCP server named no router. */
  addresses: { address: IpPrefix; gateway: IpAddress | null }[];
  routes: SandboxRoute[];
  /** DNS servers a DHCP server named; none for addresses from ranges. */
  nameservers: IpAddress[];
}

/** A DHCP attachment between its halves: recorded without an address, its link up in the namespace. */
export interface PreparedLease extends PreparedAttachment {
  /** The link in the container's namespace, as the DHCP client asks on it. */
  link: { index: number; name: string; mac: string };
}
