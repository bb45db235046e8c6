/**
 * The lanplug-dhcp IPAM driver through its API edge (api/docker/dhcp-ipam-routes.ts
 * over endpoint/dhcp-ipam.ts): what it tells dockerd about itself, its stateless
 * pools, the gateway answer, and the requests it refuses in one line before
 * anything is asked of the LAN. The DHCP exchanges behind
 * RequestAddress are the e2e lane's (test/e2e/dhcp-ipam.test.ts, a real dnsmasq);
 * here a recording stand-in takes their place.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dhcpIpamRoutes } from '../../src/api/docker/dhcp-ipam-routes';
import type { JsonObject } from '../../src/api/docker/decode';
import type { AddressAsk, DhcpAddresses } from '../../src/endpoint/dhcp-addresses';
import { DhcpIpam } from '../../src/endpoint/dhcp-ipam';
import { formatPrefix, parsePrefix, type IpAddress, type IpPrefix } from '../../src/net/address';
import { replaysEngineBodies } from '../support/engine-proof';

// Its tagged test replays Docker 29's RequestAddress (the container's name): the versions table's proof for 29.
replaysEngineBodies('docker29');

function driverWith(): { call: (path: string, body?: JsonObject) => Promise<JsonObject>; asked: string[] } {
  const asked: string[] = [];
  const stand: Pick<DhcpAddresses, 'request' | 'release'> = {
    request: (ask: AddressAsk): Promise<IpPrefix> => {
      asked.push(`request ${formatPrefix(ask.pool)} ${ask.mac} ${ask.hostname ?? '-'}`);
      return Promise.resolve(parsePrefix(ask.pool.address.family === 4 ? '172.16.86.120/24' : 'fd77::120/64'));
    },
    release: (pool: IpPrefix, address: IpAddress): void => {
      asked.push(`release ${formatPrefix(pool)} ${address.text}`);
    },
  };
  const routes = dhcpIpamRoutes(new DhcpIpam(stand));
  return {
    asked,
    call: async (path, body = {}) => {
      const handler = routes.get(path);
      assert.ok(handler, path);
      return handler(body);
    },
  };
}

async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    return (err as Error).message;
  }
  assert.fail('accepted');
}

test('lanplug-dhcp asks dockerd for each endpoint MAC, and keeps its pools in their ids (no state)', async () => {
  const { call } = driverWith();
  assert.deepEqual(await call('/IpamDriver.GetCapabilities'), {
    RequiresMACAddress: true,
    RequiresRequestReplay: false,
  });
  assert.deepEqual(await call('/IpamDriver.RequestPool', { AddressSpace: 'LanplugDhcp', Pool: '172.16.86.7/24' }), {
    PoolID: 'LanplugDhcp/172.16.86.0/24',
    Pool: '172.16.86.0/24',
    Data: {},
  });
  assert.deepEqual(await call('/IpamDriver.ReleasePool', { PoolID: 'LanplugDhcp/172.16.86.0/24' }), {});
});

test('the gateway request gets the user --gateway, else the pool own address; never a DHCP exchange', async () => {
  const { call, asked } = driverWith();
  const gateway = { RequestAddressType: 'com.docker.network.gateway' };
  assert.deepEqual(await call('/IpamDriver.RequestAddress', { PoolID: 'LanplugDhcp/fd77::/64', Options: gateway }), {
    Address: 'fd77::/64',
  });
  assert.deepEqual(
    await call('/IpamDriver.RequestAddress', {
      PoolID: 'LanplugDhcp/172.16.86.0/24',
      Address: '172.16.86.1',
      Options: gateway,
    }),
    { Address: '172.16.86.1/24' },
  );
  assert.match(
    await refusal(
      call('/IpamDriver.RequestAddress', {
        PoolID: 'LanplugDhcp/172.16.86.0/24',
        Address: '10.0.0.1',
        Options: gateway,
      }),
    ),
    /^--gateway 10\.0\.0\.1 is outside --subnet 172\.16\.86\.0\/24$/,
  );
  assert.deepEqual(asked, []);
});

test('an endpoint address is asked with the MAC dockerd sent, and the container name as hostname (Docker 29) [engine:dhcp-hostname-from-name]', async () => {
  const { call, asked } = driverWith();
  const mac = { 'com.docker.network.endpoint.macaddress': '02:00:00:00:06:01' };
  assert.deepEqual(await call('/IpamDriver.RequestAddress', { PoolID: 'LanplugDhcp/172.16.86.0/24', Options: mac }), {
    Address: '172.16.86.120/24',
    Data: {},
  });
  await call('/IpamDriver.RequestAddress', {
    PoolID: 'LanplugDhcp/fd77::/64',
    Options: { ...mac, 'com.docker.network.endpoint.name': 'web-1' },
  });
  await call('/IpamDriver.ReleaseAddress', { PoolID: 'LanplugDhcp/fd77::/64', Address: 'fd77::120' });
  assert.deepEqual(asked, [
    'request 172.16.86.0/24 02:00:00:00:06:01 -',
    'request fd77::/64 02:00:00:00:06:01 web-1',
    'release fd77::/64 fd77::120',
  ]);
});

test('refused in one line, nothing asked: no --subnet, --ip-range, --ip/--ip6, no MAC, a pool id not its own', async () => {
  const { call, asked } = driverWith();
  assert.equal(
    await refusal(call('/IpamDriver.RequestPool', { AddressSpace: 'LanplugDhcp', Pool: '', V6: true })),
    "--ipam-driver lanplug-dhcp needs --subnet with the LAN's IPv6 prefix (such as 2001:db8:1::/64): the DHCP server's addresses must fall inside it",
  );
  assert.match(
    await refusal(call('/IpamDriver.RequestPool', { Pool: '172.16.86.0/24', SubPool: '172.16.86.0/28' })),
    /^--ip-range is not available with --ipam-driver lanplug-dhcp/,
  );
  assert.match(
    await refusal(
      call('/IpamDriver.RequestAddress', {
        PoolID: 'LanplugDhcp/fd77::/64',
        Address: 'fd77::150',
        Options: { 'com.docker.network.endpoint.macaddress': '02:00:00:00:06:01' },
      }),
    ),
    /^--ip\/--ip6\/--aux-address fd77::150 cannot be used with --ipam-driver lanplug-dhcp: the DHCP server chooses/,
  );
  assert.match(
    await refusal(call('/IpamDriver.RequestAddress', { PoolID: 'LanplugDhcp/fd77::/64', Options: {} })),
    /^dockerd sent no MAC address with the request/,
  );
  assert.match(
    await refusal(call('/IpamDriver.RequestAddress', { PoolID: 'LocalDefault/172.16.86.0/24', Options: {} })),
    /^pool id 'LocalDefault\/172\.16\.86\.0\/24' is not one of lanplug-dhcp's$/,
  );
  assert.deepEqual(asked, []);
});
