/**
 * The `lanplug-dhcp` IPAM driver (libnetwork's remote IPAM API): a network's
 * addresses come from the LAN's DHCP servers, IPv4 and, with `--ipv6`, IPv6:
 *
 *   docker network create -d lanplug-macvlan --ipam-driver lanplug-dhcp \
 *     --subnet 192.168.1.0/24 [--ipv6 --subnet 2001:db8:1::/64] -o parent=eth0 lan
 *
 * Its pools keep no state: a pool is the subnet the user named (the LAN's,
 * which the server's addresses must fall in; for IPv6 also the prefix length
 * the container's address gets, which DHCPv6 does not send), and its id says
 * which. It declares RequiresMACAddress, so Docker sends each endpoint's MAC
 * with its address request: the MAC the server is asked with.
 */
import type { DhcpAddresses } from '../../driver/dhcp-addresses';
import { DHCP_ADDRESS_SPACE, DHCP_IPAM_NAME } from '../../driver/options';
import { invalidArgument } from '../../errors';
import { formatPrefix, networkOf, parseAddress, parsePrefix, prefixContains, type IpPrefix } from '../../net/address';
import { parseMac } from '../../net/mac';
import { optionalBoolean, optionalObject, optionalString, requiredString } from './decode';
import { GATEWAY_TYPE, MAC_ADDRESS_OPTION, REQUEST_ADDRESS_TYPE } from './ipam-routes';
import type { Handler } from './routes';

/** RequestAddress's option with the container's name: Docker 29 (API 1.52) and later. */
const ENDPOINT_NAME_OPTION = 'com.docker.network.endpoint.name';
const POOL_ID_PREFIX = `${DHCP_ADDRESS_SPACE}/`;

export function dhcpIpamRoutes(addresses: DhcpAddresses): ReadonlyMap<string, Handler> {
  return new Map<string, Handler>([
    ['/Plugin.Activate', () => ({ Implements: ['IpamDriver'] })],
    ['/IpamDriver.GetCapabilities', () => ({ RequiresMACAddress: true, RequiresRequestReplay: false })],
    [
      '/IpamDriver.GetDefaultAddressSpaces',
      () => ({ LocalDefaultAddressSpace: DHCP_ADDRESS_SPACE, GlobalDefaultAddressSpace: DHCP_ADDRESS_SPACE }),
    ],
    [
      '/IpamDriver.RequestPool',
      (body) => {
        const poolText = optionalString(body, 'Pool');
        const v6 = optionalBoolean(body, 'V6');
        if (poolText === null || poolText === '')
          throw invalidArgument(
            `--ipam-driver ${DHCP_IPAM_NAME} needs --subnet with the LAN's ${v6 ? 'IPv6 prefix (such as 2001:db8:1::/64)' : 'IPv4 subnet (such as 192.168.1.0/24)'}: the DHCP server's addresses must fall inside it`,
          );
        if (optionalString(body, 'SubPool') !== null)
          throw invalidArgument(
            `--ip-range is not available with --ipam-driver ${DHCP_IPAM_NAME}: the DHCP server's own range decides`,
          );
        const pool = networkOf(parsePrefix(poolText, 'Pool'));
        return { PoolID: POOL_ID_PREFIX + formatPrefix(pool), Pool: formatPrefix(pool), Data: {} };
      },
    ],
    ['/IpamDriver.ReleasePool', () => ({})],
    [
      '/IpamDriver.RequestAddress',
      async (body) => {
        const pool = poolOf(requiredString(body, 'PoolID'));
        const options = optionalObject(body, 'Options');
        const preferredText = optionalString(body, 'Address');
        const preferred =
          preferredText === null || preferredText === '' ? null : parseAddress(preferredText, 'Address');
        if (options[REQUEST_ADDRESS_TYPE] === GATEWAY_TYPE) {
          // Docker must get an address: the user's --gateway, else the pool's own address (no host's, so it
          // cannot shadow a lease); containers get the router the server names, at Join.
          if (preferred !== null && !prefixContains(pool, preferred))
            throw invalidArgument(`--gateway ${preferred.text} is outside --subnet ${formatPrefix(pool)}`);
          return { Address: formatPrefix({ address: preferred ?? pool.address, prefixLength: pool.prefixLength }) };
        }
        if (preferred !== null)
          throw invalidArgument(
            `--ip/--ip6/--aux-address ${preferred.text} cannot be used with --ipam-driver ${DHCP_IPAM_NAME}: the DHCP server chooses; reserve the address for the container's --mac-address on the server instead`,
          );
        const macText = options[MAC_ADDRESS_OPTION];
        if (typeof macText !== 'string' || macText === '')
          throw invalidArgument(
            `dockerd sent no MAC address with the request, which ${DHCP_IPAM_NAME} asks DHCP with; use --ipam-driver ${DHCP_IPAM_NAME} with -d lanplug-macvlan networks only`,
          );
        const nameText = options[ENDPOINT_NAME_OPTION];
        const hostname =
          typeof nameText === 'string' && /^[A-Za-z0-9][A-Za-z0-9-]{0,62}$/.test(nameText) ? nameText : null;
        const address = await addresses.request({ pool, mac: parseMac(macText), hostname });
        return { Address: formatPrefix(address), Data: {} };
      },
    ],
    [
      '/IpamDriver.ReleaseAddress',
      (body) => {
        addresses.release(
          poolOf(requiredString(body, 'PoolID')),
          parseAddress(requiredString(body, 'Address'), 'Address'),
        );
        return {};
      },
    ],
  ]);
}

function poolOf(poolId: string): IpPrefix {
  if (!poolId.startsWith(POOL_ID_PREFIX))
    throw invalidArgument(`pool id '${poolId.slice(0, 80)}' is not one of ${DHCP_IPAM_NAME}'s`);
  return parsePrefix(poolId.slice(POOL_ID_PREFIX.length), 'PoolID');
}
