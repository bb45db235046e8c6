/**
 * JSON as it arrives at a front end (Docker's remote API, CNI): typed as
 * JSON, never `any`, and turned into lanplug's own values at the edge.
 */
import { invalidArgument } from '../errors';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export function asObject(value: unknown, what: string): JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalidArgument(`${what} must be a JSON object`);
  }
  return value as JsonObject;
}
