/**
 * One netavark plugin call, start to finish: `create`, `setup <netns>`,
 * `teardown <netns>` and `info`, translated into the endpoint service's
 * attachment operations (the ones CNI's ADD and DEL use) and the answer
 * back in netavark's shapes: the final network, the status block, nothing,
 * or a non-zero exit with `{"error": "<one line>"}`.
 *
 * It reaches the daemon over the CNI socket (the executable is the CNI one,
 * called with arguments instead of CNI_* variables; see native/cni-shim.c):
 * the command and the namespace path arrive as NETAVARK_COMMAND and
 * NETAVARK_NETNS, the JSON as stdin.
 */
import type { AttachNetwork, AttachRequest, Attached } from '../../driver/attach-request';
import { checkInterfaceName } from '../../driver/names';
import { removeDropRoutes } from '../../driver/sandbox';
import { invalidArgument } from '../../errors';
import type { Logger } from '../../log';
import { recordEvent } from '../../metrics/events';
import { countRequest } from '../../metrics/registry';
import { formatPrefix, parseAddress } from '../../net/address';
import { parseMac } from '../../net/mac';
import type { CniAnswer, CniInvocation } from '../cni/protocol';
import { asObject, type Json, type JsonObject } from '../json';
import { parsePodmanNetwork, podmanNetworkName, type PodmanNetwork } from './network';

export const NETAVARK_COMMAND = 'NETAVARK_COMMAND';
export const NETAVARK_NETNS = 'NETAVARK_NETNS';
/** The only version of the plugin API there is (plugin-API.md, "Info subcommand"). */
export const NETAVARK_API_VERSION = '1.0.0';
const COMMANDS = ['create', 'setup', 'teardown', 'info'] as const;
type NetavarkCommand = (typeof COMMANDS)[number];
/** Podman's container ids are 64 hex digits; any id CNI would take is taken. */
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;

/** What the netavark front end drives: the endpoint service's attachment operations. */
export interface NetavarkEndpoints {
  checkAttachmentNetwork(network: AttachNetwork): Promise<void>;
  attach(request: AttachRequest): Promise<Attached>;
  /** `onRemoved`: told once there was an attachment and its record is gone. */
  detach(
    networkName: string,
    containerId: string,
    ifname: string,
    netns: string | null,
    onRemoved?: () => void,
  ): Promise<void>;
}

/** True for a call of the executable as a netavark plugin (CNI calls carry CNI_COMMAND instead). */
export function isNetavarkCall(invocation: CniInvocation): boolean {
  return invocation.env.has(NETAVARK_COMMAND);
}

/** What the netavark front end needs of the daemon: its endpoint service, and its version for `info`. */
export interface NetavarkServices {
  endpoints: NetavarkEndpoints;
  version: string;
}

export async function runNetavark(
  invocation: CniInvocation,
  services: NetavarkServices,
  log: Logger,
): Promise<CniAnswer> {
  const command = invocation.env.get(NETAVARK_COMMAND) ?? '';
  const started = process.hrtime.bigint();
  const counted = (outcome: 'ok' | 'error'): void =>
    countRequest(`netavark.${netavarkMethod(command)}`, outcome, Number(process.hrtime.bigint() - started) / 1e9);
  try {
    const answer = await dispatch(command, invocation, services, log);
    counted('ok');
    return { exitCode: 0, stdout: answer === null ? '' : `${JSON.stringify(answer)}\n` };
  } catch (err) {
    const message = oneLine(err instanceof Error ? err.message : String(err));
    counted('error');
    log.warn('netavark plugin call failed', { command, error: message });
    recordEvent('request.failed', { method: `netavark.${netavarkMethod(command)}`, error: message });
    return { exitCode: 1, stdout: `${JSON.stringify({ error: message })}\n` };
  }
}

/** The metric's method label: netavark's commands, never what a caller put there. */
function netavarkMethod(command: string): string {
  return ['create', 'setup', 'teardown', 'info'].includes(command) ? command : 'unknown';
}

/** What `info` answers; the executable gives the same without the daemon (native/cni-shim.c). */
export function infoAnswer(version: string): JsonObject {
  return { version, api_version: NETAVARK_API_VERSION };
}

async function dispatch(
  command: string,
  invocation: CniInvocation,
  { endpoints, version }: NetavarkServices,
  log: Logger,
): Promise<JsonObject | null> {
  if (!(COMMANDS as readonly string[]).includes(command))
    throw invalidArgument(`unknown command '${command.slice(0, 40)}'; netavark plugins take ${COMMANDS.join(', ')}`);
  switch (command as NetavarkCommand) {
    case 'info':
      return infoAnswer(version);
    case 'create': {
      const network = parsePodmanNetwork(parseJson(invocation.stdin, 'network'));
      await endpoints.checkAttachmentNetwork(network.attach);
      log.info('podman network accepted', { network: network.name, driver: network.driver });
      return network.final;
    }
    case 'setup': {
      const call = parseExec(invocation);
      const attached = await endpoints.attach(attachRequest(call));
      recordEvent('attachment.added', {
        via: 'netavark',
        network: call.network.name,
        container: call.containerId.slice(0, 12),
        ifname: attached.ifname,
        mac: attached.mac,
        addresses: attached.addresses.map((a) => formatPrefix(a.address)).join(','),
      });
      return statusBlock(attached);
    }
    case 'teardown': {
      const call = parseExec(invocation);
      // Idempotent (driver/sandbox-attachments.ts detach): no record, no namespace or no link left is success.
      // An event for what was removed only: a repeated teardown is no second removal; one that failed
      // after the record went is (its retry finds nothing to tell).
      await endpoints.detach(podmanNetworkName(call.network.name), call.containerId, call.ifname, call.netns, () =>
        recordEvent('attachment.removed', {
          via: 'netavark',
          network: call.network.name,
          container: call.containerId.slice(0, 12),
          ifname: call.ifname,
        }),
      );
      removeDropRoutes(call.netns, call.network.routes);
      return null;
    }
  }
}

/** A setup or teardown: netavark's `NetworkPluginExec` and the namespace path it gave as argument. */
export interface NetavarkExec {
  netns: string;
  containerId: string;
  network: PodmanNetwork;
  ifname: string;
  staticIps: string[];
  staticMac: string | null;
}

export function parseExec(invocation: CniInvocation): NetavarkExec {
  const netns = invocation.env.get(NETAVARK_NETNS) ?? '';
  if (!netns.startsWith('/')) throw invalidArgument(`the namespace path '${netns.slice(0, 80)}' is not absolute`);
  const exec = asObject(parseJson(invocation.stdin, 'plugin input'), 'plugin input');
  const containerId = exec['container_id'];
  if (typeof containerId !== 'string' || !CONTAINER_ID.test(containerId))
    throw invalidArgument(`container_id must be letters, digits, '_', '.', '-'`);
  const network = parsePodmanNetwork(exec['network'] ?? null);
  const options = asObject(exec['network_options'] ?? null, 'network_options');
  const ifname = options['interface_name'];
  if (typeof ifname !== 'string') throw invalidArgument('network_options interface_name must be a string');
  checkInterfaceName(ifname, 'interface_name');
  const perContainer = options['options'];
  if (perContainer !== undefined && perContainer !== null && Object.keys(asObject(perContainer, 'options')).length > 0)
    throw invalidArgument(
      `per-container options (${Object.keys(asObject(perContainer, 'options')).join(', ').slice(0, 80)}) are not taken by lanplug's drivers; use ip= and mac=`,
    );
  return {
    netns,
    containerId,
    network,
    ifname,
    staticIps: stringList(options['static_ips'], 'static_ips'),
    staticMac: typeof options['static_mac'] === 'string' && options['static_mac'] !== '' ? options['static_mac'] : null,
  };
}

export function attachRequest(call: NetavarkExec): AttachRequest {
  const { network } = call;
  if (call.staticMac !== null && network.driver === 'ipvlan')
    throw invalidArgument("an ipvlan interface has its parent's MAC: --mac-address is not available on this network");
  const requestedIps = call.staticIps.map((text) => parseAddress(text, '--ip'));
  // netavark 2.0 passes several static IPs of one subnet; each container has one address per family here
  for (const family of [4, 6] as const) {
    const same = requestedIps.filter((a) => a.family === family);
    if (same.length > 1)
      throw invalidArgument(
        `one address per family on network ${network.name}: --ip ${same.map((a) => a.text).join(' and ')} are both IPv${family}; give one`,
      );
  }
  if (network.attach.dhcp && requestedIps.length > 0)
    throw invalidArgument(
      `the LAN's DHCP server chooses the address on network ${network.name}: --ip ${requestedIps.map((a) => a.text).join(', ')} is not possible (reserve it for the container on the server instead)`,
    );
  return {
    ...network.attach,
    routes: network.routes,
    mac: call.staticMac === null ? null : parseMac(call.staticMac),
    requestedIps,
    sandbox: { containerId: call.containerId, netns: call.netns, ifname: call.ifname },
  };
}

/** netavark's `StatusBlock`: what `podman inspect` shows, and the resolvers the container is given. */
export function statusBlock(attached: Attached): JsonObject {
  return {
    dns_search_domains: [],
    dns_server_ips: attached.nameservers.map((a) => a.text),
    interfaces: {
      [attached.ifname]: {
        mac_address: attached.mac,
        subnets: attached.addresses.map(({ address, gateway }) => ({
          ipnet: formatPrefix(address),
          ...(gateway === null ? {} : { gateway: gateway.text }),
        })),
      },
    },
  };
}

function parseJson(text: string, what: string): Json {
  try {
    return JSON.parse(text) as Json;
  } catch (err) {
    throw invalidArgument(`the ${what} on stdin is not JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function stringList(value: Json | undefined, what: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string'))
    throw invalidArgument(`${what} must be a list of strings`);
  return value as string[];
}

/** netavark shows the message as is: one line, whatever a lower layer's message held. */
function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, '; ').trim() || 'failed';
}
