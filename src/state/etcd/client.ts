/**
 * A small etcd v3 client over etcd's own JSON gateway (`POST /v3/kv/txn`
 * and friends, served on every member's client URL since etcd 3.3), so that
 * lanplug needs no gRPC stack: keys and values travel base64-encoded, 64-bit
 * numbers as decimal strings. Only what the shared address book uses: range,
 * transactions, leases, status.
 *
 * Every call has a deadline, and each try of a member a total bound within it
 * (not an idle timeout). A member that refuses the connection, times out
 * or answers "no leader" is skipped for the next one, until the deadline:
 * a write whose answer was lost may still have been applied, which is why
 * every value lanplug writes carries a token it can recognise (address-book.ts).
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { LanplugError } from '../../errors';
import { countEtcdRequest } from '../../metrics/registry';
import { recordEvent } from '../../metrics/events';

export interface EtcdTls {
  /** PEM text of the CA that signed the members' certificates (etcdctl's --cacert). */
  ca: string;
  /** Client certificate and key (etcdctl's --cert, --key), when the cluster asks for one. */
  cert?: string;
  key?: string;
}

export interface EtcdOptions {
  /** Client URLs, e.g. http://10.0.0.1:2379. */
  endpoints: readonly string[];
  tls?: EtcdTls | null;
  /** etcdctl's --user NAME:PASSWORD (role-based auth over the gateway's /v3/auth/authenticate). */
  user?: { name: string; password: string } | null;
  /** How long one member gets before the next is tried. */
  attemptMs?: number;
}

export interface KeyValue {
  key: string;
  value: string;
  createRevision: bigint;
  modRevision: bigint;
  /** The lease the key is attached to; '0' for none. */
  lease: string;
}

export type Compare =
  | { key: string; target: 'CREATE'; result: 'EQUAL' | 'NOT_EQUAL' | 'GREATER' | 'LESS'; createRevision: bigint }
  | { key: string; target: 'MOD'; result: 'EQUAL' | 'NOT_EQUAL' | 'GREATER' | 'LESS'; modRevision: bigint }
  | { key: string; target: 'VALUE'; result: 'EQUAL' | 'NOT_EQUAL'; value: string };

export type Op =
  | { put: { key: string; value: string; lease?: string } }
  | { delete: { key: string; prefix?: boolean } }
  | { range: { key: string; prefix?: boolean } };

export interface TxnResult {
  succeeded: boolean;
  /** One entry per op of the branch taken: the keys a range op read, [] for puts and deletes. */
  results: KeyValue[][];
}

export interface MemberStatus {
  endpoint: string;
  version: string;
  /** The member's id and the leader's as it sees it ('0' when it knows of none). */
  memberId: string;
  leader: string;
  /** The member's clock, from its HTTP Date header (second resolution). */
  clock: Date | null;
}

/** etcd's gRPC codes that mean "ask another member or later", not "your request is wrong". */
const RETRYABLE_CODES = new Set([4 /* DeadlineExceeded */, 14 /* Unavailable */]);
const DEFAULT_ATTEMPT_MS = 3_000;

export class EtcdClient {
  private preferred = 0;
  /** Whether the last round trip got an answer; null before the first. */
  private wasReachable: boolean | null = null;
  private token: string | null = null;

  constructor(private readonly options: EtcdOptions) {
    if (options.endpoints.length === 0) throw new LanplugError('InvalidArgument', 'etcd: no endpoints given');
  }

  get endpoints(): readonly string[] {
    return this.options.endpoints;
  }

  async range(key: string, opts: { prefix?: boolean; deadlineMs: number }): Promise<KeyValue[]> {
    const answer = await this.call('/v3/kv/range', rangeBody(key, opts.prefix === true), opts.deadlineMs);
    return keyValues(answer['kvs']);
  }

  async txn(compare: readonly Compare[], success: readonly Op[], failure: readonly Op[], deadlineMs: number) {
    const answer = await this.call(
      '/v3/kv/txn',
      { compare: compare.map(compareBody), success: success.map(opBody), failure: failure.map(opBody) },
      deadlineMs,
    );
    const responses = Array.isArray(answer['responses']) ? (answer['responses'] as unknown[]) : [];
    const result: TxnResult = {
      succeeded: answer['succeeded'] === true,
      results: responses.map((r) => {
        const range = isObject(r) ? r['response_range'] : undefined;
        return isObject(range) ? keyValues(range['kvs']) : [];
      }),
    };
    return result;
  }

  /** A lease of at least `ttlSeconds` (etcd may grant more); its id. */
  async grantLease(ttlSeconds: number, deadlineMs: number): Promise<string> {
    const answer = await this.call('/v3/lease/grant', { TTL: String(ttlSeconds) }, deadlineMs);
    const id = answer['ID'];
    if (typeof id !== 'string') throw new LanplugError('Unavailable', 'etcd granted a lease without an id');
    return id;
  }

  /** The lease's remaining TTL after the refresh; 0 when etcd no longer has it. */
  async keepAlive(leaseId: string, deadlineMs: number): Promise<number> {
    const answer = await this.call('/v3/lease/keepalive', { ID: leaseId }, deadlineMs);
    const result = answer['result'];
    return isObject(result) ? Number(result['TTL'] ?? 0) : 0;
  }

  async revokeLease(leaseId: string, deadlineMs: number): Promise<void> {
    try {
      await this.call('/v3/lease/revoke', { ID: leaseId }, deadlineMs);
    } catch (err) {
      if (!(err instanceof LanplugError && /lease not found/.test(err.message))) throw err;
    }
  }

  /** Each member's own view (asked of that member only): for `lanplug doctor`. */
  async memberStatus(endpoint: string, deadlineMs: number): Promise<MemberStatus> {
    const { body, date } = await this.post(endpoint, '/v3/maintenance/status', {}, deadlineMs);
    const header = isObject(body['header']) ? body['header'] : {};
    return {
      endpoint,
      version: scalar(body['version'], '?'),
      memberId: scalar(header['member_id'], '0'),
      leader: scalar(body['leader'], '0'),
      clock: date,
    };
  }

  /**
   * POSTs to the preferred member, then the others in turn, until one answers or the deadline
   * passes. Errors that a member made (a failed compare is not one) come back as thrown
   * LanplugErrors: 'Unavailable' when etcd could not serve the request, 'InvalidArgument' otherwise.
   */
  private async call(path: string, body: Record<string, unknown>, deadlineMs: number) {
    const started = process.hrtime.bigint();
    const seconds = (): number => Number(process.hrtime.bigint() - started) / 1e9;
    try {
      const answer = await this.callMembers(path, body, deadlineMs);
      countEtcdRequest('ok', seconds());
      this.reachable(true, '');
      return answer;
    } catch (err) {
      countEtcdRequest('error', seconds());
      if (err instanceof LanplugError && err.code === 'Unavailable') this.reachable(false, err.message);
      throw err;
    }
  }

  /** Tells `lanplug events` when etcd stops or starts answering (not every call). */
  private reachable(now: boolean, why: string): void {
    if (this.wasReachable === now) return;
    this.wasReachable = now;
    recordEvent(now ? 'etcd.reachable' : 'etcd.unreachable', now ? {} : { why });
  }

  private async callMembers(path: string, body: Record<string, unknown>, deadlineMs: number) {
    const deadline = Date.now() + deadlineMs;
    const attemptMs = this.options.attemptMs ?? DEFAULT_ATTEMPT_MS;
    const failures: string[] = [];
    for (let attempt = 0; ; attempt++) {
      const left = deadline - Date.now();
      if (left <= 0 || (attempt >= this.options.endpoints.length && left < 200)) break;
      const index = (this.preferred + attempt) % this.options.endpoints.length;
      const endpoint = this.options.endpoints[index] ?? '';
      try {
        const { body: answer } = await this.post(endpoint, path, body, Math.min(left, attemptMs));
        this.preferred = index;
        return answer;
      } catch (err) {
        const retry = !(err instanceof LanplugError) || err.code === 'Unavailable';
        if (!retry) throw err;
        failures.push(`${endpoint}: ${err instanceof Error ? err.message : String(err)}`);
        if (attempt + 1 >= this.options.endpoints.length)
          await pause(Math.min(250, Math.max(0, deadline - Date.now())));
      }
    }
    const last = failures.slice(-this.options.endpoints.length).join('; ');
    throw new LanplugError(
      'Unavailable',
      `etcd did not answer within ${(deadlineMs / 1000).toFixed(0)} s (no member reachable, or no quorum): ${last}`,
    );
  }

  private async post(endpoint: string, path: string, body: Record<string, unknown>, timeoutMs: number) {
    // The attempt's time, signing in included.
    const until = Date.now() + timeoutMs;
    const headers: Record<string, string> = {};
    if ((this.options.user ?? null) !== null && path !== '/v3/auth/authenticate') {
      this.token ??= await this.authenticate(endpoint, timeoutMs);
      headers['Authorization'] = this.token;
    }
    const { status, text, date } = await this.postRaw(
      endpoint,
      path,
      JSON.stringify(body),
      headers,
      Math.max(1, until - Date.now()),
    );
    const parsed: unknown = text === '' ? {} : JSON.parse(text);
    const answer = isObject(parsed) ? parsed : {};
    const error =
      typeof answer['error'] === 'string'
        ? answer['error']
        : typeof answer['message'] === 'string'
          ? answer['message']
          : null;
    if (status !== 200 || error !== null) {
      const message = error ?? `HTTP ${status}`;
      if (/invalid auth token|auth: invalid/.test(message)) this.token = null;
      const code = Number(answer['code'] ?? 0);
      const retryable =
        RETRYABLE_CODES.has(code) ||
        // A member going down answers from its gateway that its own connection is closing (its leader
        // killed during a burst, seen here): another member takes the call.
        /no leader|timed out|leader changed|too many requests|invalid auth token|client connection is closing|transport is closing/.test(
          message,
        );
      throw new LanplugError(retryable ? 'Unavailable' : 'InvalidArgument', `etcd: ${message}`);
    }
    return { body: answer, date };
  }

  private async authenticate(endpoint: string, timeoutMs: number): Promise<string> {
    const user = this.options.user ?? null;
    if (user === null) throw new LanplugError('Internal', 'unreachable: no etcd user');
    const { body } = await this.post(
      endpoint,
      '/v3/auth/authenticate',
      { name: user.name, password: user.password },
      timeoutMs,
    );
    const token = body['token'];
    if (typeof token !== 'string')
      throw new LanplugError('InvalidArgument', `etcd: user ${user.name} was not authenticated`);
    return token;
  }

  private postRaw(
    endpoint: string,
    path: string,
    text: string,
    extraHeaders: Record<string, string>,
    timeoutMs: number,
  ): Promise<{ status: number; text: string; date: Date | null }> {
    const url = new URL(path, endpoint);
    const tls = this.options.tls ?? null;
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      // A total bound, not http's idle `timeout`: a member that sends a byte now and then would never end the call.
      const timer = setTimeout(() => {
        reject(unavailable(new Error(`no answer within ${timeoutMs} ms`)));
        req.destroy();
      }, timeoutMs);
      const req = send(
        url,
        {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...extraHeaders },
          ...(tls === null ? {} : { ca: tls.ca, cert: tls.cert, key: tls.key }),
        },
        (res: IncomingMessage) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (err) => reject(unavailable(err)));
          res.on('end', () => {
            clearTimeout(timer);
            const dateHeader = res.headers.date;
            resolve({
              status: res.statusCode ?? 0,
              text: Buffer.concat(chunks).toString('utf8'),
              date: dateHeader === undefined ? null : new Date(dateHeader),
            });
          });
        },
      );
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(unavailable(err));
      });
      req.end(text);
    });
  }
}

/** The first key after every key that starts with `prefix`: etcd's range_end for a prefix read. */
export function prefixEnd(prefix: string): Buffer {
  const bytes = Buffer.from(prefix, 'utf8');
  for (let i = bytes.length - 1; i >= 0; i--) {
    if ((bytes[i] ?? 0) < 0xff) {
      const end = Buffer.from(bytes.subarray(0, i + 1));
      end[i] = (end[i] ?? 0) + 1;
      return end;
    }
  }
  return Buffer.from([0]);
}

const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');
const unb64 = (text: unknown): string => (typeof text === 'string' ? Buffer.from(text, 'base64').toString('utf8') : '');

function rangeBody(key: string, prefix: boolean): Record<string, string> {
  return prefix ? { key: b64(key), range_end: prefixEnd(key).toString('base64') } : { key: b64(key) };
}

function compareBody(c: Compare): Record<string, string> {
  const base = { key: b64(c.key), target: c.target, result: c.result };
  switch (c.target) {
    case 'CREATE':
      return { ...base, create_revision: String(c.createRevision) };
    case 'MOD':
      return { ...base, mod_revision: String(c.modRevision) };
    case 'VALUE':
      return { ...base, value: b64(c.value) };
  }
}

function opBody(op: Op): Record<string, Record<string, string>> {
  if ('put' in op) {
    const put: Record<string, string> = { key: b64(op.put.key), value: b64(op.put.value) };
    if (op.put.lease !== undefined) put['lease'] = op.put.lease;
    return { request_put: put };
  }
  if ('delete' in op) return { request_delete_range: rangeBody(op.delete.key, op.delete.prefix === true) };
  return { request_range: rangeBody(op.range.key, op.range.prefix === true) };
}

function keyValues(kvs: unknown): KeyValue[] {
  if (!Array.isArray(kvs)) return [];
  return kvs.filter(isObject).map((kv) => ({
    key: unb64(kv['key']),
    value: unb64(kv['value']),
    createRevision: BigInt(scalar(kv['create_revision'], '0')),
    modRevision: BigInt(scalar(kv['mod_revision'], '0')),
    lease: scalar(kv['lease'], '0'),
  }));
}

/** A JSON string or number as text (etcd's gateway sends 64-bit numbers as strings). */
function scalar(value: unknown, fallback: string): string {
  return typeof value === 'string' || typeof value === 'number' ? String(value) : fallback;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function unavailable(err: Error): LanplugError {
  return new LanplugError('Unavailable', err.message);
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
