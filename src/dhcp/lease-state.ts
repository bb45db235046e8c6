/**
 * The life of a lease the keeper holds, as an explicit state machine (the
 * states are model/lease.ts's LeaseState; RFC 2131 §4.4.5, RFC 8415 §18.2.4):
 *
 *   state      its timer's exchange            ACK     refusal   no answer
 *   bound      none: at T1 it is renewing      -       -         -
 *   renewing   renew with its server           bound   refused   renewing; rebinding from T2
 *   rebinding  rebind with any server          bound   refused   rebinding; expired from its end
 *   expired    ask anew for the same address   bound   -         expired
 *   refused    ask anew for any address        bound   -         refused
 *
 * A refusal is a NAK, or a move onto an address the LAN check refused (and
 * declined); the step asks anew at once after one. The clock moves a lease
 * forward (stateAt); only an answer moves it back to bound (afterAnswer). A
 * released lease has no state: its record is gone.
 *
 * Pure: the keeper's renewal step (renewal.ts) is where time and the wire meet it.
 */
import { INFINITE_SECONDS, leaseExpiresAt, type Lease, type LeaseState } from '../model/lease';

/** RFC 2131 §4.4.5: retry at half the time left until T2 (or the lease's end), but no sooner than 60 s. */
export const RETRY_MIN_MS = 60_000;

/** The states the clock moves a lease through, in order. */
const BY_CLOCK: readonly LeaseState[] = ['bound', 'renewing', 'rebinding', 'expired'];

/** T2: from here on any server may extend the lease (rebinding). */
export function rebindAt(lease: Lease): number {
  return lease.boundAt + lease.rebindSeconds * 1000;
}

/** Where the clock alone puts a lease at `now`: before T1 bound, before T2 renewing, before its end rebinding. */
export function clockState(lease: Lease, now: number): LeaseState {
  if (lease.leaseSeconds === INFINITE_SECONDS) return 'bound';
  if (now >= leaseExpiresAt(lease)) return 'expired';
  if (now >= rebindAt(lease)) return 'rebinding';
  if (now >= lease.boundAt + lease.renewSeconds * 1000) return 'renewing';
  return 'bound';
}

/**
 * The state of a lease at `now`: the one recorded, moved forward by the clock (never back: only an
 * answer binds a lease again). A refused lease stays refused until a new lease replaces it.
 */
export function stateAt(lease: Lease, now: number): LeaseState {
  if (lease.state === 'refused') return 'refused';
  const byClock = clockState(lease, now);
  return BY_CLOCK.indexOf(byClock) > BY_CLOCK.indexOf(lease.state) ? byClock : lease.state;
}

/** The state a lease's timer finds it in: a bound lease's timer is its T1, so it is renewing at least. */
export function dueState(lease: Lease, now: number): Exclude<LeaseState, 'bound'> {
  const state = stateAt(lease, now);
  return state === 'bound' ? 'renewing' : state;
}

/** What a step does in each state: a request to the server (unicast) or to any (broadcast), or ask anew. */
export type LeaseExchange = { kind: 'renew' } | { kind: 'rebind' } | { kind: 'ask-anew'; sameAddress: boolean };

export function exchangeFor(state: Exclude<LeaseState, 'bound'>): LeaseExchange {
  switch (state) {
    case 'renewing':
      return { kind: 'renew' };
    case 'rebinding':
      return { kind: 'rebind' };
    // An expired address is asked for again (the server may still have it free); a refused one is not.
    case 'expired':
      return { kind: 'ask-anew', sameAddress: true };
    case 'refused':
      return { kind: 'ask-anew', sameAddress: false };
  }
}

/** What an exchange came to: an ACK (or a new lease), a refusal, or no usable answer. */
export type LeaseAnswer = 'ack' | 'refusal' | 'none';

/** The state an answer leads to: an ACK binds (the new lease's times start the clock again). */
export function afterAnswer(state: LeaseState, answer: LeaseAnswer): LeaseState {
  if (answer === 'ack') return 'bound';
  if (answer === 'refusal') return 'refused';
  return state;
}

/**
 * When to try again after a step that got no lease: half the time left until T2 (when the step began
 * before it) or until the lease's end, but no sooner than RETRY_MIN_MS.
 */
export function retryAt(lease: Lease, stepBegan: number, now: number): number {
  const end = stepBegan < rebindAt(lease) ? rebindAt(lease) : leaseExpiresAt(lease);
  return now + Math.max(RETRY_MIN_MS, (end - now) / 2);
}
