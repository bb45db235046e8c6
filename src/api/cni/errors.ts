/**
 * CNI's error answer: a non-zero exit and `{cniVersion, code, msg, details}`
 * on stdout. The codes are the spec's (SPEC.md "Error"); lanplug's own
 * failures map onto them by kind, the message stays lanplug's one line.
 */
import { LanplugError } from '../../errors';

export const CNI_ERROR = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnvironment: 4,
  ioFailure: 5,
  decodingFailure: 6,
  invalidConfig: 7,
  invalidNetns: 8,
  tryAgainLater: 11,
  pluginNotAvailable: 50,
  internal: 999,
} as const;

export class CniError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly details = '',
  ) {
    super(message);
    this.name = 'CniError';
  }
}

/** A failure of any layer, as the CNI error a runtime shows its user. */
export function toCniError(err: unknown): CniError {
  if (err instanceof CniError) return err;
  if (err instanceof LanplugError) {
    if (err.code === 'InvalidArgument') return new CniError(CNI_ERROR.invalidConfig, err.message);
    if (err.code === 'Unavailable') return new CniError(CNI_ERROR.tryAgainLater, err.message);
    // The host is not as the call needs it (a namespace gone, a file missing): the runtime's environment.
    if (err.code === 'Environment') return new CniError(CNI_ERROR.invalidEnvironment, err.message);
    return new CniError(CNI_ERROR.internal, err.message);
  }
  return new CniError(CNI_ERROR.internal, err instanceof Error ? err.message : String(err));
}
