/**
 * Link names: the checks every interface name passes before it reaches the
 * kernel, and the names lanplug gives the links it creates.
 *
 * Every link lanplug creates carries a name it can recognise after a crash:
 * endpoint links `lp-<endpoint id>`, private parents `dm-<network id>` (as
 * Docker's own driver names them), 802.1Q parents `<base>.<vlan id>`, feature
 * probes `lpp-<random>`, host-access shims `lh-<network id>`.
 */
import { randomBytes } from 'node:crypto';
import { invalidArgument } from '../errors';
import { shortId } from '../model/network';
import { ifnameProblem, MAX_IFNAME_BYTES } from '../net/ifname';

export const ENDPOINT_LINK_PREFIX = 'lp-';
export const PRIVATE_PARENT_PREFIX = 'dm-';
/** Throw-away links of the kernel feature probe: `lpp-<6 hex><role>`. */
export const PROBE_LINK_PREFIX = 'lpp-';
/** A host-access network's shim, the host's own link beside its containers: `lh-<network id>`. */
export const SHIM_LINK_PREFIX = 'lh-';

/**
 * Throws unless `name` is a name the kernel would accept for a link
 * (dev_valid_name): 1-15 bytes, not '.' or '..', no '/', ':' or whitespace.
 * `what` prefixes the message, e.g. "-o parent interface name".
 */
export function checkInterfaceName(name: string, what: string): void {
  switch (ifnameProblem(name)) {
    case null:
      return;
    case 'empty':
      throw invalidArgument(`${what} is empty; expected an interface name such as eth0`);
    case 'too-long':
      throw invalidArgument(
        `${what} '${name}' is ${Buffer.byteLength(name, 'utf8')} bytes long; Linux interface names are 1-${MAX_IFNAME_BYTES} bytes`,
      );
    case 'dots':
      throw invalidArgument(`${what} '${name}' is not a valid interface name`);
    case 'bad-character':
      throw invalidArgument(`${what} '${name}' is not valid: interface names may not contain '/', ':' or whitespace`);
  }
}

export function endpointLinkName(endpointId: string): string {
  return ENDPOINT_LINK_PREFIX + shortId(endpointId);
}

export function shimLinkName(networkId: string): string {
  return SHIM_LINK_PREFIX + shortId(networkId);
}

export function privateParentName(networkId: string): string {
  return PRIVATE_PARENT_PREFIX + shortId(networkId);
}

/** A link the lanplug-dhcp IPAM driver asks the LAN's DHCP server with, for one request: `lpd-<random>`. */
export const ASKING_LINK_PREFIX = 'lpd-';

export function askingLinkName(): string {
  return ASKING_LINK_PREFIX + randomBytes(4).toString('hex');
}

/** Names for one probe: its links share a random part and differ by role ('b' bridge, 'i' ipvlan). */
export function probeLinkNames(): { bridge: string; ipvlan: string } {
  const id = PROBE_LINK_PREFIX + randomBytes(3).toString('hex');
  return { bridge: `${id}b`, ipvlan: `${id}i` };
}

/** Docker ids are hex; anything else is refused before it becomes part of a link name. */
export function checkDockerId(id: string, what: string): void {
  if (!/^[0-9a-zA-Z_-]{12,128}$/.test(id)) {
    throw invalidArgument(`${what} '${id.slice(0, 80)}' is not valid; expected at least 12 letters or digits`);
  }
}
