/**
 * `lanplug identity NAME`: the values a container named by `--driver-opt
 * lanplug.identity=NAME` gets (docs/identity.md), computed here without the
 * daemon: to reserve them on the LAN's DHCP server beforehand, or to give
 * the MAC as `--mac-address` where Docker picks a container's MAC before
 * lanplug sees its options (shared pools, lanplug-dhcp).
 */
import {
  clientIdFromIdentity,
  duidFromIdentity,
  hostnameFromIdentity,
  macFromIdentity,
  OPT_ENDPOINT_IDENTITY,
} from '../driver/identity';
import { parseEndpointLabel } from '../driver/options';
import { invalidArgument, LanplugError } from '../errors';

export function formatIdentity(name: string): string {
  try {
    parseEndpointLabel(OPT_ENDPOINT_IDENTITY, name);
  } catch (err) {
    if (!(err instanceof LanplugError)) throw err;
    throw invalidArgument(
      `'${name}' is not a valid identity name; expected 1-63 letters, digits, '.', '_', ':' or '-', starting with a letter or digit`,
    );
  }
  const colons = (hex: string): string => hex.replace(/(..)(?!$)/g, '$1:');
  return [
    `name       ${name}`,
    `mac        ${macFromIdentity(name)}`,
    `client id  ${colons(clientIdFromIdentity(name))}`,
    `duid       ${colons(duidFromIdentity(name))}`,
    `hostname   ${hostnameFromIdentity(name) ?? '-'}`,
    '',
  ].join('\n');
}
