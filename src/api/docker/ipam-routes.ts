/**
 * libnetwork's remote IPAM API (moby's libnetwork docs/ipam.md), served as
 * the `lanplug` IPAM driver: `docker network create --ipam-driver lanplug`.
 * Handlers translate JSON to the allocator's typed requests and back; errors
 * go out in the IPAM API's own field, `Error`.
 */
import { GLOBAL_ADDRESS_SPACE, LOCAL_ADDRESS_SPACE, type IpamAllocator } from '../../ipam/allocator';
import { LanplugError } from '../../errors';
import {
  ADVICE_EXPLICIT,
  answeringEverythingMessage,
  HOST_ADVICE_EXPLICIT,
  type LanCheck,
  type LanConflicts,
} from '../../lan/conflicts';
import type { PoolRecord } from '../../model/ipam';
import { formatPrefix, parseAddress, parsePrefix } from '../../net/address';
import { parseMac } from '../../net/mac';
import { optionalBoolean, optionalObject, optionalString, requiredString } from './decode';
import type { Handler } from './routes';

/** RequestAddress's option naming the gateway request. */
export const REQUEST_ADDRESS_TYPE = 'RequestAddressType';
export const GATEWAY_TYPE = 'com.docker.network.gateway';
/** RequestAddress's option with the endpoint's MAC, sent when GetCapabilities said RequiresMACAddress. */
export const MAC_ADDRESS_OPTION = 'com.docker.network.endpoint.macaddress';

/**
 * Addresses in use on the LAN one automatic allocation skips (each a probe answered) before it
 * gives up: a /24's worth. A LAN that really has that many devices in a row at the start of the
 * range still gets past them (~10-25 ms each: a few seconds; and they are remembered for 10
 * minutes, so the next allocation skips them unasked), while a device answering every probe from a
 * MAC of its own making, which ONE_DEVICE_STREAK cannot tell, does not walk a /16 for minutes.
 */
const MAX_ANSWERED_PER_ALLOCATION = 256;

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

/**
 * `rulesFor` says what applies to a pool's addresses: only once a lanplug
 * network on a LAN uses the pool (the gateway and --aux-address entries are
 * claimed before that, and so are never probed nor refused as this host's),
 * an address must not be this host's, and `lan` says where and how to ask the
 * LAN about it (null: not at all); null: nothing applies.
 */
export function ipamRoutes(
  allocator: IpamAllocator,
  lan: LanConflicts | null = null,
  rulesFor: (pool: PoolRecord) => { lan: LanCheck | null } | null = () => null,
): ReadonlyMap<string, Handler> {
  return new Map<string, Handler>([
    ...ipamDescription(allocator.shared),
    [
      '/IpamDriver.RequestPool',
      async (body) => {
        const pool = optionalString(body, 'Pool');
        const subPool = optionalString(body, 'SubPool');
        const record = await allocator.requestPool({
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
        await allocator.releasePool(requiredString(body, 'PoolID'));
        return {};
      },
    ],
    [
      '/IpamDriver.RequestAddress',
      async (body) => {
        const options = optionalObject(body, 'Options');
        const preferredText = optionalString(body, 'Address');
        const macText = options[MAC_ADDRESS_OPTION];
        const request = {
          poolId: requiredString(body, 'PoolID'),
          preferred: preferredText === null ? null : parseAddress(preferredText, 'Address'),
          gateway: options[REQUEST_ADDRESS_TYPE] === GATEWAY_TYPE,
          mac: typeof macText === 'string' && macText !== '' ? parseMac(macText) : null,
        };
        const rules = lan === null || request.gateway ? null : rulesFor(await allocator.pool(request.poolId));
        // Refused before it is claimed: automatic allocation skips this host's addresses on its own.
        if (lan !== null && rules !== null && request.preferred !== null)
          lan.refuseHostAddresses([request.preferred], HOST_ADVICE_EXPLICIT);
        for (let answered = 1; ; answered++) {
          // Claimed first, asked about after: no other request can take it while the LAN is asked.
          const address = await allocator.requestAddress(request);
          const check = rules?.lan ?? null;
          if (lan === null || check === null) return { Address: formatPrefix(address), Data: {} };
          // The warmer asked about it a moment ago (the usual case): no probe.
          if (lan.isKnownFree(check.link, address.address)) {
            lan.used();
            return { Address: formatPrefix(address), Data: {} };
          }
          const verdict = await lan.verdict(check, address.address);
          if (!verdict.inUse) {
            lan.used();
            return { Address: formatPrefix(address), Data: {} };
          }
          if (request.preferred !== null && check.policy === 'warn')
            return { Address: formatPrefix(address), Data: {} };
          await allocator.releaseAddress(request.poolId, address.address);
          if (request.preferred !== null)
            throw new LanplugError('Conflict', lan.refusalOf(check, address.address, verdict, ADVICE_EXPLICIT));
          // Automatic: the allocator now skips it (the LAN was seen using it); the next one, unless what
          // answered answers for everything, or the walk is long enough to be no ordinary LAN's.
          const everything = lan.answeringEverything(check, address.address.family);
          if (everything !== null && everything.mac === verdict.mac)
            throw new LanplugError('Conflict', answeringEverythingMessage(everything));
          if (answered >= MAX_ANSWERED_PER_ALLOCATION)
            throw new LanplugError(
              'Conflict',
              `${answered} addresses in a row are in use on the LAN, the last ${address.address.text} by ${verdict.mac} (${verdict.how}); lanplug stopped looking: give --ip-range where the LAN has free addresses`,
            );
        }
      },
    ],
    [
      '/IpamDriver.ReleaseAddress',
      async (body) => {
        await allocator.releaseAddress(
          requiredString(body, 'PoolID'),
          parseAddress(requiredString(body, 'Address'), 'Address'),
        );
        return {};
      },
    ],
  ]);
}
