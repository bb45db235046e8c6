/**
 * The `lanplug-dhcp` IPAM driver's API edge (libnetwork's remote IPAM API):
 * each body decoded, one call to the driver (endpoint/dhcp-ipam.ts: its
 * pools, what it refuses, the leases it asks for), the answer encoded.
 */
import type { DhcpIpam } from '../../endpoint/dhcp-ipam';
import { DHCP_ADDRESS_SPACE } from '../../driver/options';
import { formatPrefix, parseAddress, parsePrefix } from '../../net/address';
import { parseMac } from '../../net/mac';
import { optionalBoolean, optionalObject, optionalString, requiredString } from './decode';
import { GATEWAY_TYPE, MAC_ADDRESS_OPTION, REQUEST_ADDRESS_TYPE } from './ipam-routes';
import type { Handler } from './routes';

/** RequestAddress's option with the container's name: Docker 29 (API 1.52) and later. */
const ENDPOINT_NAME_OPTION = 'com.docker.network.endpoint.name';

export function dhcpIpamRoutes(ipam: DhcpIpam): ReadonlyMap<string, Handler> {
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
        const pool = optionalString(body, 'Pool');
        const subPool = optionalString(body, 'SubPool');
        const { poolId, pool: record } = ipam.requestPool({
          pool: pool === null ? null : parsePrefix(pool, 'Pool'),
          range: subPool === null ? null : parsePrefix(subPool, 'SubPool'),
          v6: optionalBoolean(body, 'V6'),
        });
        return { PoolID: poolId, Pool: formatPrefix(record), Data: {} };
      },
    ],
    ['/IpamDriver.ReleasePool', () => ({})],
    [
      '/IpamDriver.RequestAddress',
      async (body) => {
        const options = optionalObject(body, 'Options');
        const preferred = optionalString(body, 'Address');
        const mac = options[MAC_ADDRESS_OPTION];
        const name = options[ENDPOINT_NAME_OPTION];
        const gateway = options[REQUEST_ADDRESS_TYPE] === GATEWAY_TYPE;
        const address = await ipam.requestAddress({
          poolId: requiredString(body, 'PoolID'),
          preferred: preferred === null ? null : parseAddress(preferred, 'Address'),
          gateway,
          mac: typeof mac === 'string' && mac !== '' ? parseMac(mac) : null,
          name: typeof name === 'string' ? name : null,
        });
        return gateway ? { Address: formatPrefix(address) } : { Address: formatPrefix(address), Data: {} };
      },
    ],
    [
      '/IpamDriver.ReleaseAddress',
      (body) => {
        ipam.releaseAddress(requiredString(body, 'PoolID'), parseAddress(requiredString(body, 'Address'), 'Address'));
        return {};
      },
    ],
  ]);
}
