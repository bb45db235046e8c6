/**
 * One CNI invocation, start to finish: the spec's command dispatch over the
 * typed attachment operations, with the answer (result or error JSON, exit
 * code) in the version the configuration asked for.
 */
import type { SandboxAttachments } from '../../driver/attachments';
import type { Logger } from '../../log';
import type { JsonObject } from '../json';
import {
  parseConfigJson,
  parseEnvironment,
  parseNetworkConfig,
  parseVersion,
  type CniEnvironment,
  type CniNetworkConfig,
} from './config';
import { CNI_ERROR, CniError, toCniError } from './errors';
import type { CniAnswer, CniInvocation } from './protocol';
import { encodeResult, errorAnswer, versionAnswer } from './result';

/** The version an error is reported in: the configuration's when it can be read, else the newest. */
function reportedVersion(stdin: string): string {
  try {
    return parseVersion(parseConfigJson(stdin));
  } catch {
    return '1.1.0';
  }
}

export function runCni(invocation: CniInvocation, attachments: SandboxAttachments, log: Logger): CniAnswer {
  try {
    const stdout = dispatch(invocation, attachments);
    return { exitCode: 0, stdout: stdout === null ? '' : `${JSON.stringify(stdout)}\n` };
  } catch (err) {
    const failure = toCniError(err);
    const command = invocation.env.get('CNI_COMMAND') ?? '(none)';
    log.warn('CNI call failed', { command, code: failure.code, error: failure.message });
    const answer = errorAnswer(reportedVersion(invocation.stdin), failure.code, failure.message, failure.details);
    return { exitCode: 1, stdout: `${JSON.stringify(answer)}\n` };
  }
}

function dispatch(invocation: CniInvocation, attachments: SandboxAttachments): JsonObject | null {
  if (invocation.env.get('CNI_COMMAND') === 'VERSION') return versionAnswer();
  const env = parseEnvironment(invocation.env);
  const config = parseNetworkConfig(parseConfigJson(invocation.stdin), env);
  requireVersionFor(env, config);
  switch (env.command) {
    case 'ADD':
      return add(env, config, attachments);
    case 'DEL':
      attachments.detach(config.name, sandboxId(env), ifnameOf(env), env.netns);
      return null;
    case 'CHECK':
      if (config.prevResult === null) throw new CniError(CNI_ERROR.invalidConfig, 'CHECK needs prevResult');
      attachments.check(config.name, sandboxId(env), ifnameOf(env), netnsOf(env));
      return null;
    case 'STATUS':
      try {
        attachments.ready(config.options);
      } catch (err) {
        throw new CniError(CNI_ERROR.pluginNotAvailable, toCniError(err).message);
      }
      return null;
    case 'GC':
      attachments.collect(config.name, config.validAttachments ?? []);
      return null;
    case 'VERSION':
      return versionAnswer();
  }
}

function add(env: CniEnvironment, config: CniNetworkConfig, attachments: SandboxAttachments): JsonObject {
  const attached = attachments.attach({
    networkName: config.name,
    driver: config.driver,
    options: config.options,
    auxAddresses: config.auxAddresses,
    rangeSets: config.ipam?.rangeSets ?? [],
    routes: config.ipam?.routes ?? [],
    mac: config.mac,
    requestedIps: config.requestedIps,
    sandbox: { containerId: sandboxId(env), netns: netnsOf(env), ifname: ifnameOf(env) },
  });
  return encodeResult(
    {
      interface: { name: attached.ifname, mac: attached.mac, sandbox: attached.netns },
      addresses: attached.addresses,
      routes: attached.routes,
      dns: config.dns,
    },
    config.cniVersion,
  );
}

/** CHECK came with 0.4.0; STATUS and GC with 1.1.0. */
function requireVersionFor(env: CniEnvironment, config: CniNetworkConfig): void {
  const [major = 0, minor = 0] = config.cniVersion.split('.').map(Number);
  const needs = env.command === 'CHECK' ? [0, 4] : env.command === 'STATUS' || env.command === 'GC' ? [1, 1] : null;
  if (needs === null) return;
  const [needMajor = 0, needMinor = 0] = needs;
  if (major < needMajor || (major === needMajor && minor < needMinor))
    throw new CniError(
      CNI_ERROR.incompatibleVersion,
      `${env.command} needs cniVersion ${needMajor}.${needMinor}.0 or later; the configuration has ${config.cniVersion}`,
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
