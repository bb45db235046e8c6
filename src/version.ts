/**
 * What this lanplug is: the package version, and the versions of what it
 * writes and speaks, so that an operator can tell two installations apart
 * and an upgrade can say what it moves forward.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SUPPORTED_VERSIONS } from './api/cni/config';
import { RECORD_VERSION } from './state/records';
import { SCHEMA_VERSION } from './state/schema';

/** The package.json beside dist/ (dist/src/version.js -> ../../package.json). */
export function packageVersion(): string {
  const text = readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8');
  const version = (JSON.parse(text) as { version?: unknown }).version;
  return typeof version === 'string' ? version : 'unknown';
}

/** One line: `lanplug 0.1.0 (state schema 6, records 4, CNI 0.3.0-1.1.0)`. */
export function versionLine(): string {
  const cni = `${SUPPORTED_VERSIONS[0]}-${SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.length - 1] ?? ''}`;
  return `lanplug ${packageVersion()} (state schema ${SCHEMA_VERSION}, records ${RECORD_VERSION}, CNI ${cni})`;
}
