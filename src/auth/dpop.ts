// DPoP proof verification (RFC 9449) shared by the client socket (lease) and the admin socket
// (operator API key): typ, ES256 allow-list, embedded public jwk, thumbprint == expected jkt,
// signature, htm, htu (public_base_url + path, exact), iat window, ath, optional server nonce,
// single-use jti through the replay store. Any failure is `invalid_dpop` (replay: `replay_detected`).
import { createHmac } from 'node:crypto';
import { GateError } from '../errors.ts';
import type { Clock } from '../contracts.ts';
import type { ReplayStore } from '../stores/types.ts';
import { asP256PublicJwk, keyFor, parseCompact, safeEqual, sha256b64url, thumbprint, verifyEs256, verifyEs256Async } from './jws.ts';

export const DPOP_ALGS = ['ES256'] as const;

export interface DpopOptions {
  publicBaseUrl: string;
  maxAgeSeconds: number;
  maxFutureSeconds: number;
  replay: ReplayStore;
  clock: Clock;
  /**
   * Proofs issued before this instant (ms) are refused: the boot fence for a replay store that may
   * have lost its last jtis (embedded: no fsync per jti; Redis without persistence). Defaults to
   * the verifier's construction time (start-up); pass 0 to disable.
   */
  notBeforeMs?: number;
  nonce?: NonceIssuer;
  /**
   * Whether to check the signature on the libuv thread pool (frees the event loop for other
   * requests) rather than inline (no thread hop: lower latency when nothing else is waiting).
   * Asked on every proof; defaults to always offloading.
   */
  offloadSignature?: () => boolean;
}

export interface ProofInput {
  proof: string;
  method: string;
  path: string;
  /** The access token the proof must be bound to (lease JWT or operator API key). */
  accessToken: string;
  /** The thumbprint the proof's key must have (`cnf.jkt` or the operator's pinned key). */
  expectedJkt: string;
}

/** Stateless rotating server nonces (RFC 9449 §8): HMAC of a 30 s time step; current and previous accepted. */
export class NonceIssuer {
  constructor(private readonly secret: Buffer, private readonly clock: Clock, private readonly stepMs = 30_000) {}

  private at(step: number): string {
    return createHmac('sha256', this.secret).update(`dpop-nonce:${step}`).digest('base64url').slice(0, 32);
  }

  current(): string {
    return this.at(Math.floor(this.clock.now() / this.stepMs));
  }

  valid(nonce: unknown): boolean {
    if (typeof nonce !== 'string') return false;
    const step = Math.floor(this.clock.now() / this.stepMs);
    // Both compared, always, so the timing does not reveal which one matched.
    const a = safeEqual(nonce, this.at(step));
    const b = safeEqual(nonce, this.at(step - 1));
    return a || b;
  }
}

/** Guards against an unusable clock: not finite, before 2024, or jumped back more than 5 minutes. */
export class ClockGuard {
  private last = 0;
  constructor(private readonly clock: Clock) {}
  now(): number {
    const t = this.clock.now();
    if (!Number.isFinite(t) || t < Date.UTC(2024, 0, 1) || t < this.last - 300_000) {
      throw new GateError('clock_error', 'system clock is not usable');
    }
    if (t > this.last) this.last = t;
    return t;
  }
}

const JTI = /^[\x21-\x7e]{8,128}$/;

export class DpopVerifier {
  private readonly clockGuard: ClockGuard;
  private readonly base: string;
  private readonly notBeforeMs: number;

  constructor(private readonly opts: DpopOptions) {
    this.clockGuard = new ClockGuard(opts.clock);
    this.base = opts.publicBaseUrl.replace(/\/+$/, '');
    this.notBeforeMs = opts.notBeforeMs ?? opts.clock.now();
  }

  get nonceIssuer(): NonceIssuer | undefined {
    return this.opts.nonce;
  }

  /** Verifies the proof and consumes its jti. Returns the proof's jkt. */
  async verify(input: ProofInput): Promise<string> {
    const bad = (why: string): never => { throw new GateError('invalid_dpop', why); };
    let parsed;
    try {
      parsed = parseCompact(input.proof);
    } catch {
      return bad('malformed proof');
    }
    const { header: h, payload: p } = parsed;
    if (h.typ !== 'dpop+jwt') bad('typ');
    if (!(DPOP_ALGS as readonly unknown[]).includes(h.alg)) bad('alg');
    let jwk;
    try {
      jwk = asP256PublicJwk(h.jwk);
    } catch {
      return bad('jwk');
    }
    const jkt = thumbprint(jwk);
    let key;
    try {
      key = keyFor(jwk, jkt);
    } catch {
      return bad('jwk');
    }
    // Signature before the binding check, so an unknown credential costs the same as a known one.
    const offload = this.opts.offloadSignature?.() ?? true;
    const signed = offload ? await verifyEs256Async(key, parsed.signingInput, parsed.signature) : verifyEs256(key, parsed.signingInput, parsed.signature);
    if (!signed) bad('signature');
    // The clock is read after the signature check, which may wait in the thread pool for an unbounded
    // time: freshness must be judged on the same clock reading as the replay mark below, or a
    // proof whose replay entry expired during that wait would pass both (test/security/dpop-replay-window.test.ts).
    const nowMs = this.clockGuard.now();
    const nowS = Math.floor(nowMs / 1000);
    if (!safeEqual(jkt, input.expectedJkt)) bad('key not bound');
    if (p.htm !== input.method) bad('htm');
    if (typeof p.htu !== 'string' || p.htu !== this.base + input.path) bad('htu');
    if (typeof p.iat !== 'number' || !Number.isFinite(p.iat)) bad('iat');
    const iat = p.iat as number;
    if (iat < nowS - this.opts.maxAgeSeconds) bad('iat too old');
    if (iat > nowS + this.opts.maxFutureSeconds) bad('iat in the future');
    if (iat * 1000 < this.notBeforeMs - 1000) bad('iat before start-up');
    if (typeof p.jti !== 'string' || !JTI.test(p.jti)) bad('jti');
    if (typeof p.ath !== 'string' || !safeEqual(p.ath, sha256b64url(input.accessToken))) bad('ath');
    if (this.opts.nonce && !this.opts.nonce.valid(p.nonce)) {
      throw new GateError('use_dpop_nonce', 'nonce required');
    }
    const ttl = (this.opts.maxAgeSeconds + this.opts.maxFutureSeconds + 1) * 1000;
    // The store judges the mark on the same reading as the freshness checks above.
    const fresh = await this.opts.replay.markUsed(`${jkt}:${p.jti as string}`, ttl, nowMs);
    if (!fresh) throw new GateError('replay_detected');
    return jkt;
  }
}
