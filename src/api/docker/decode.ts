/**
 * Decoding Docker's JSON at the edge. Nothing past this file sees `unknown`:
 * a request either becomes a typed value or fails with a one-line message
 * that names the field.
 */
import { invalidArgument } from '../../errors';
import { asObject, type Json, type JsonObject } from '../json';

export { asObject, type Json, type JsonObject };

export function parseBody(body: string): JsonObject {
  if (body.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    throw invalidArgument('request body is not valid JSON');
  }
  return asObject(value, 'request body');
}

export function requiredString(o: JsonObject, key: string): string {
  const v = o[key];
  if (typeof v !== 'string' || v === '') throw invalidArgument(`request field ${key} must be a non-empty string`);
  return v;
}

/** Absent, null and "" all mean "not given" in Docker's requests. */
export function optionalString(o: JsonObject, key: string): string | null {
  const v = o[key];
  if (v === undefined || v === null || v === '') return null;
  if (typeof v !== 'string') throw invalidArgument(`request field ${key} must be a string`);
  return v;
}

export function optionalObject(o: JsonObject, key: string): JsonObject {
  const v = o[key];
  if (v === undefined || v === null) return {};
  return asObject(v, `request field ${key}`);
}

export function optionalArray(o: JsonObject, key: string): Json[] {
  const v = o[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalidArgument(`request field ${key} must be an array`);
  return v;
}

/** Docker sends booleans in network options either as JSON booleans or as "true"/"false" strings. */
export function optionalBoolean(o: JsonObject, key: string): boolean {
  const v = o[key];
  if (v === undefined || v === null || v === false || v === 'false' || v === '') return false;
  if (v === true || v === 'true') return true;
  throw invalidArgument(`request field ${key} must be a boolean`);
}

/**
 * A map of string options (`-o key=value`); non-string values are refused,
 * not coerced. The map has no prototype, so a key such as `__proto__` is just
 * an unknown option (and refused as one), never a path into Object.prototype.
 */
export function stringMap(o: JsonObject, what: string): Record<string, string> {
  const out = Object.create(null) as Record<string, string>;
  for (const [key, value] of Object.entries(o)) {
    if (typeof value !== 'string') throw invalidArgument(`${what} ${key} must be a string`);
    out[key] = value;
  }
  return out;
}
