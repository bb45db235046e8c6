/**
 * One CNI invocation, start to finish: the spec's command dispatch over the
 * typed attachment operations, with the answer (result or error JSON, exit
 * code) in the version the configuration asked for.
 */
import type { EndpointService } from '../../endpoint/service';
import type { CniIpam } from '../../ipam/cni-ipam';
import type { Logger } from '../../log';
import type { JsonObject } from '../json';
import {
  isIpamDelegation,
  parseConfigJson,
  parseEnvironment,
  parseIpamConfig,
  parseNetworkConfig,
  parseVersion,
  type CniEnvironment,
  type CniVersion,
} from './config';
import { CNI_ERROR, CniError, toCniError } from './errors';
import type { CniAnswer, CniInvocation } from './protocol';
import { encodeResult, errorAnswer, versionAnswer } from './result';
import { recordEvent } from '../../metrics/events';
import { countRequest } from '../../metrics/registry';
import { formatPrefix } from '../../net/address';

/** The version an error is reported in: the configuration's when it can be read, else the newest. */
function reportedVersion(stdin: string): string {
  try {
    return parseVersion(parseConfigJson(stdin));
  } catch {
    return '1.1.0';
  }
}

/** What the CNI front end drives: lanplug's main plugins (through the endpoint service), and its IPAM plugin for others'. */
export interface CniServices {
  endpoints: EndpointService;
  ipam: CniIpam;
}

export async function runCni(invocation: CniInvocation, services: CniServices, log: Logger): Promise<CniAnswer> {
  const started = process.hrtime.bigint();
  const answer = await answerCni(invocation, services, log);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  countRequest(`CNI.${cniMethod(invocation.env.get('CNI_COMMAND'))}`, answer.exitCode === 0 ? 'ok' : 'error', seconds);
  return answer;
}

/** The spec's commands by name; anything else counted as one (a caller's typo must not grow the metrics). */
function cniMethod(command: string | undefined): string {
  return ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION'].includes(command ?? '') ? (command ?? '') : 'unknown';
}

async function answerCni(invocation: CniInvocation, services: CniServices, log: Logger): Promise<CniAnswer> {
  try {
    const stdout = await dispatch(invocation, services);
    return { exitCode: 0, stdout: stdout === null ? '' : `${JSON.stringify(stdout)}\n` };
  } catch (err) {
    const failure = toCniError(err);
    const command = invocation.env.get('CNI_COMMAND') ?? '(none)';
    log.warn('CNI call failed', { command, code: failure.code, error: failure.message });
    recordEvent('request.failed', { method: `CNI.${cniMethod(command)}`, error: failure.message });
    const answer = errorAnswer(reportedVersion(invocation.stdin), failure.code, failure.message, failure.details);
    return { exitCode: 1, stdout: `${JSON.stringify(answer)}\n` };
  }
}

async function dispatch(invocation: CniInvocation, services: CniServices): Promise<JsonObject | null> {
  if (invocation.env.get('CNI_COMMAND') === 'VERSION') return versionAnswer();
  const env = parseEnvironment(invocation.env);
  const conf = parseConfigJson(invocation.stdin);
  if (isIpamDelegation(conf)) return ipamDispatch(env, conf, services.ipam);
  const { endpoints } = services;
  const config = parseNetworkConfig(conf, env);
  requireVersionFor(env, config.cniVersion);
  switch (env.command) {
    case 'ADD':
      return add(env, config, endpoints);
    case 'DEL':
      // An event for what was removed only: runtimes repeat DELs, which then have nothing to do; a DEL
      // that failed after the record went is told (its retry finds nothing).
      await endpoints.detach(config.name, sandboxId(env), ifnameOf(env), env.netns, () =>
        recordEvent('attachment.removed', {
          via: 'cni',
          network: config.name,
          container: sandboxId(env).slice(0, 12),
          ifname: ifnameOf(env),
        }),
      );
      return null;
    case 'CHECK':
      if (config.prevResult === null) throw new CniError(CNI_ERROR.invalidConfig, 'CHECK needs prevResult');
      await endpoints.checkAttachment(config.name, sandboxId(env), ifnameOf(env), netnsOf(env));
      return null;
    case 'STATUS':
      try {
        endpoints.attachmentsReady(config.options);
      } catch (err) {
        throw new CniError(CNI_ERROR.pluginNotAvailable, toCniError(err).message);
      }
      return null;
    case 'GC':
      await endpoints.collectAttachments(config.name, config.validAttachments ?? []);
      return null;
    case 'VERSION':
      return versionAnswer();
  }
}

/** The `lanplug` IPAM plugin, delegated to by another main plugin: addresses only, no link. */
function ipamDispatch(env: CniEnvironment, conf: JsonObject, ipam: CniIpam): JsonObject | null {
  const config = parseIpamConfig(conf, env);
  requireVersionFor(env, config.cniVersion);
  switch (env.command) {
    case 'ADD': {
      const claims = ipam.add(config.name, sandboxId(env), ifnameOf(env), config.ipam.rangeSets, config.requestedIps);
      const routes = config.ipam.routes.map((route) => ({
        destination: route.destination,
        gateway:
          route.gateway ??
          claims.find((c) => c.address.address.family === route.destination.address.family)?.gateway ??
          null,
      }));
      return encodeResult(
        {
          interface: null,
          addresses: claims.map((c) => ({ address: c.address, gateway: c.gateway })),
          routes,
          dns: config.dns,
        },
        config.cniVersion,
      );
    }
    case 'DEL':
      ipam.del(config.name, sandboxId(env), ifnameOf(env));
      return null;
    case 'CHECK':
      ipam.check(config.name, sandboxId(env), ifnameOf(env));
      return null;
    case 'GC':
      ipam.collect(config.name, config.validAttachments ?? []);
      return null;
    case 'STATUS':
    case 'VERSION':
      return env.command === 'VERSION' ? versionAnswer() : null;
  }
}

async function add(
  env: CniEnvironment,
  config: ReturnType<typeof parseNetworkConfig>,
  endpoints: EndpointService,
): Promise<JsonObject> {
  const attached = await endpoints.attach({
    networkName: config.name,
    driver: config.driver,
    options: config.options,
    auxAddresses: config.auxAddresses,
    rangeSets: config.ipam?.rangeSets ?? [],
    dhcp: config.dhcp,
    dhcp6: config.dhcp6,
    shared: config.ipam?.shared ?? false,
    routes: config.routes,
    mac: config.mac,
    requestedIps: config.requestedIps,
    sandbox: { containerId: sandboxId(env), netns: netnsOf(env), ifname: ifnameOf(env) },
  });
  recordEvent('attachment.added', {
    via: 'cni',
    network: config.name,
    container: sandboxId(env).slice(0, 12),
    ifname: attached.ifname,
    mac: attached.mac,
    addresses: attached.addresses.map((a) => formatPrefix(a.address)).join(','),
  });
  return encodeResult(
    {
      interface: { name: attached.ifname, mac: attached.mac, sandbox: attached.netns },
      addresses: attached.addresses,
      routes: attached.routes,
      // The configuration's own `dns` wins over what a DHCP server named.
      dns:
        config.dns ??
        (attached.nameservers.length === 0 ? null : { nameservers: attached.nameservers.map((a) => a.text) }),
    },
    config.cniVersion,
  );
}

/** CHECK came with 0.4.0; STATUS and GC with 1.1.0. */
function requireVersionFor(env: CniEnvironment, version: CniVersion): void {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  const needs = env.command === 'CHECK' ? [0, 4] : env.command === 'STATUS' || env.command === 'GC' ? [1, 1] : null;
  if (needs === null) return;
  const [needMajor = 0, needMinor = 0] = needs;
  if (major < needMajor || (major === needMajor && minor < needMinor))
    throw new CniError(
      CNI_ERROR.incompatibleVersion,
      `${env.command} needs cniVersion ${needMajor}.${needMinor}.0 or later; the configuration has ${version}`,
    );
}

// parseEnvironment guarantees these for the commands that use them.
function sandboxId(env: CniEnvironment): string {
  return required(env.containerId, 'CNI_CONTAINERID');
}
function ifnameOf(env: CniEnvironment): string {
  return required(env.ifname, 'CNI_IFNAME');
}
function netnsOf(env: CniEnvironment): string {
  return required(env.netns, 'CNI_NETNS');
}
function required(value: string | null, name: string): string {
  if (value === null) throw new CniError(CNI_ERROR.invalidEnvironment, `${name} is not set`);
  return value;
}
