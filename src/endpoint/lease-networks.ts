/**
 * What the lease keeper (dhcp/, a floor below) needs of a lease's network:
 * the link to ask the server from, where a moved address is recorded, and
 * how an offered address is checked on the LAN. Answered from the driver's
 * records and the LAN side, as they are at the moment the keeper asks.
 */
import type { LanCitizen } from '../citizen';
import type { LeaseNetworks } from '../dhcp/keeper';
import type { NetworkDriver } from '../driver/network-driver';

export function leaseNetworks(driver: NetworkDriver, citizen: LanCitizen): LeaseNetworks {
  return {
    sendLink: (networkId) => {
      const network = driver.network(networkId);
      return network === null ? null : driver.lanLink(network.spec);
    },
    moved: (networkId, endpointId, address) => driver.moveEndpointAddress(networkId, endpointId, address),
    offerCheck: (networkId) => citizen.dhcpOfferCheck(networkId),
  };
}
