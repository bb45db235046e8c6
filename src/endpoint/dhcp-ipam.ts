/**
 * The `lanplug-dhcp` IPAM driver: a network's addresses come from the LAN's
 * DHCP servers, IPv4 and, with `--ipv6`, IPv6:
 *
 *   docker network create -d lanplug-macvlan --ipam-driver lanplug-dhcp \
 *     --subnet 192.168.1.0/24 [--ipv6 --subnet 2001:db8:1::/64] -o parent=eth0 lan
 *
 * Its pools keep no state: a pool is the subnet the user named (the LAN's,
 * which the server's addresses must fall in; for IPv6 also the prefix length
 * the container's address gets, which DHCPv6 does not send), and its id says
 * which. It declares RequiresMACAddress, so Docker sends each endpoint's MAC
 * with its address request: the MAC the server is asked with (the exchange
 * is dhcp-addresses.ts's). Beside the `lanplug` IPAM driver (lanplug-ipam.ts
 * says why this floor): an endpoint's address is a wait for the LAN's server.
 */
import { DHCP_ADDRESS_SPACE, DHCP_IPAM_NAME } from '../driver/options';
import { invalidArgument } from '../errors';
import { formatPrefix, networkOf, parsePrefix, prefixContains, type IpAddress, type IpPrefix } from '../net/address';
import type { DhcpAddresses } from './dhcp-addresses';

const POOL_ID_PREFIX = `${DHCP_ADDRESS_SPACE}/`;

/** RequestPool, decoded: `--subnet`, `--ip-range`, and whether Docker asks for the IPv6 pool. */
export interface DhcpPoolRequest {
  pool: IpPrefix | null;
  range: IpPrefix | null;
  v6: boolean;
}

/** RequestAddress, decoded. */
export interface DhcpAddressRequest {
  poolId: string;
  /** `--gateway`, `--ip`/`--ip6` or an `--aux-address`; null for any. */
  preferred: IpAddress | null;
  /** Docker's gateway request (RequestAddressType=com.docker.network.gateway). */
  gateway: boolean;
  /** The endpoint's MAC dockerd sent (RequiresMACAddress). */
  mac: string | null;
  /** The container's name (Docker 29, API 1.52, and later). */
  name: string | null;
}

export class DhcpIpam {
  constructor(private readonly addresses: Pick<DhcpAddresses, 'request' | 'release'>) {}

  requestPool(request: DhcpPoolRequest): { poolId: string; pool: IpPrefix } {
    if (request.pool === null)
      throw invalidArgument(
        `--ipam-driver ${DHCP_IPAM_NAME} needs --subnet with the LAN's ${request.v6 ? 'IPv6 prefix (such as 2001:db8:1::/64)' : 'IPv4 subnet (such as 192.168.1.0/24)'}: the DHCP server's addresses must fall inside it`,
      );
    if (request.range !== null)
      throw invalidArgument(
        `--ip-range is not available with --ipam-driver ${DHCP_IPAM_NAME}: the DHCP server's own range decides`,
      );
    const pool = networkOf(request.pool);
    return { poolId: POOL_ID_PREFIX + formatPrefix(pool), pool };
  }

  /** The gateway Docker must have, or a lease for the endpoint's MAC: its address as the container gets it. */
  async requestAddress(request: DhcpAddressRequest): Promise<IpPrefix> {
    const pool = poolOf(request.poolId);
    const { preferred } = request;
    if (request.gateway) {
      // Docker must get an address: the user's --gateway, else the pool's own address (no host's, so it
      // cannot shadow a lease); containers get the router the server names, at Join.
      if (preferred !== null && !prefixContains(pool, preferred))
        throw invalidArgument(`--gateway ${preferred.text} is outside --subnet ${formatPrefix(pool)}`);
      return { address: preferred ?? pool.address, prefixLength: pool.prefixLength };
    }
    if (preferred !== null)
      throw invalidArgument(
        `--ip/--ip6/--aux-address ${preferred.text} cannot be used with --ipam-driver ${DHCP_IPAM_NAME}: the DHCP server chooses; reserve the address for the container's --mac-address on the server instead`,
      );
    if (request.mac === null)
      throw invalidArgument(
        `dockerd sent no MAC address with the request, which ${DHCP_IPAM_NAME} asks DHCP with; use --ipam-driver ${DHCP_IPAM_NAME} with -d lanplug-macvlan networks only`,
      );
    // Option 12 only for a name that is a valid hostname.
    const hostname =
      request.name !== null && /^[A-Za-z0-9][A-Za-z0-9-]{0,62}$/.test(request.name) ? request.name : null;
    return this.addresses.request({ pool, mac: request.mac, hostname });
  }

  /** Docker no longer uses `address` (dhcp-addresses.ts says which lease, if any, goes). */
  releaseAddress(poolId: string, address: IpAddress): void {
    this.addresses.release(poolOf(poolId), address);
  }
}

function poolOf(poolId: string): IpPrefix {
  if (!poolId.startsWith(POOL_ID_PREFIX))
    throw invalidArgument(`pool id '${poolId.slice(0, 80)}' is not one of ${DHCP_IPAM_NAME}'s`);
  return parsePrefix(poolId.slice(POOL_ID_PREFIX.length), 'PoolID');
}
