/**
 * libnetwork's remote IPAM API (moby's libnetwork docs/ipam.md), served as
 * the `lanplug` IPAM driver: `docker network create --ipam-driver lanplug`.
 * Handlers translate JSON to the driver's typed requests and back (every
 * decision, and every wait, is endpoint/lanplug-ipam.ts's); errors go out in
 * the IPAM API's own field, `Error`.
 */
import type { LanplugIpam } from '../../endpoint/lanplug-ipam';
import { GLOBAL_ADDRESS_SPACE, LOCAL_ADDRESS_SPACE } from '../../ipam/allocator';
import { formatPrefix, parseAddress, parsePrefix } from '../../net/address';
import { parseMac } from '../../net/mac';
import { optionalBoolean, optionalObject, optionalString, requiredString } from './decode';
import type { Handler } from './routes';

/** RequestAddress's option naming the gateway request. */
export const REQUEST_ADDRESS_TYPE = 'RequestAddressType';
export const GATEWAY_TYPE = 'com.docker.network.gateway';
/** RequestAddress's option with the endpoint's MAC, sent when GetCapabilities said RequiresMACAddress. */
export const MAC_ADDRESS_OPTION = 'com.docker.network.endpoint.macaddress';
/** RequestAddress's option with the container's name: Docker 29 on (moby#50586); none before. */
export const ENDPOINT_NAME_OPTION = 'com.docker.network.endpoint.name';

/**
 * How the IPAM driver describes itself: what dockerd asks when it registers the driver. On shared
 * pools it asks for each endpoint's MAC: Docker then sends it with the endpoint's address request
 * (a MAC is claimed on the LAN with its address, and an --aux-address request is the one without).
 * Never request replay: dockerd would then wait on lanplug, and etcd, at boot.
 */
export function ipamDescription(shared = false): [string, Handler][] {
  return [
    ['/Plugin.Activate', () => ({ Implements: ['IpamDriver'] })],
    ['/IpamDriver.GetCapabilities', () => ({ RequiresMACAddress: shared, RequiresRequestReplay: false })],
    [
      '/IpamDriver.GetDefaultAddressSpaces',
      () => ({ LocalDefaultAddressSpace: LOCAL_ADDRESS_SPACE, GlobalDefaultAddressSpace: GLOBAL_ADDRESS_SPACE }),
    ],
  ];
}

/** Each of the IPAM API's methods: its body decoded, one call to the driver, the answer encoded. */
export function ipamRoutes(ipam: LanplugIpam): ReadonlyMap<string, Handler> {
  return new Map<string, Handler>([
    ...ipamDescription(ipam.shared),
    [
      '/IpamDriver.RequestPool',
      async (body) => {
        const pool = optionalString(body, 'Pool');
        const subPool = optionalString(body, 'SubPool');
        const record = await ipam.requestPool({
          addressSpace: optionalString(body, 'AddressSpace') ?? LOCAL_ADDRESS_SPACE,
          pool: pool === null ? null : parsePrefix(pool, 'Pool'),
          range: subPool === null ? null : parsePrefix(subPool, 'SubPool'),
          v6: optionalBoolean(body, 'V6'),
        });
        return { PoolID: record.poolId, Pool: formatPrefix(record.pool), Data: {} };
      },
    ],
    [
      '/IpamDriver.ReleasePool',
      async (body) => {
        await ipam.releasePool(requiredString(body, 'PoolID'));
        return {};
      },
    ],
    [
      '/IpamDriver.RequestAddress',
      async (body) => {
        const options = optionalObject(body, 'Options');
        const preferredText = optionalString(body, 'Address');
        const macText = options[MAC_ADDRESS_OPTION];
        const nameText = options[ENDPOINT_NAME_OPTION];
        const address = await ipam.requestAddress({
          poolId: requiredString(body, 'PoolID'),
          preferred: preferredText === null ? null : parseAddress(preferredText, 'Address'),
          gateway: options[REQUEST_ADDRESS_TYPE] === GATEWAY_TYPE,
          mac: typeof macText === 'string' && macText !== '' ? parseMac(macText) : null,
          name: typeof nameText === 'string' && nameText !== '' ? nameText : null,
        });
        return { Address: formatPrefix(address), Data: {} };
      },
    ],
    [
      '/IpamDriver.ReleaseAddress',
      async (body) => {
        await ipam.releaseAddress(
          requiredString(body, 'PoolID'),
          parseAddress(requiredString(body, 'Address'), 'Address'),
        );
        return {};
      },
    ],
  ]);
}
