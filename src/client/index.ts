// The agent client: talks to the gate over its Unix socket with a non-extractable P-256 key,
// obtains and renews leases (renewal keeps the session), signs a fresh DPoP proof for every call,
// retries a 401 use_dpop_nonce once with the server's nonce, and throws typed errors.
import { webcrypto } from 'node:crypto';
import { createProof, type PublicJwk } from './proof.ts';
import { unixTransport, type RawResponse, type Transport } from './transport.ts';

export { createProof } from './proof.ts';
export { unixTransport } from './transport.ts';

/** Every non-2xx answer from the gate. `code` is the contract's error code. */
export class PortcullisError extends Error {
  constructor(readonly status: number, readonly code: string, readonly body: unknown) {
    super(`${status} ${code}`);
    this.name = 'PortcullisError';
  }
}

/** Thrown by `execute` when the action is held for an operator (202). */
export class ApprovalRequired extends Error {
  constructor(readonly approvalId: string, readonly requestHash: string, readonly traceId: string) {
    super(`approval required: ${approvalId}`);
    this.name = 'ApprovalRequired';
  }
}

export interface ClientOptions {
  socketPath: string;
  /** Must equal the gate's public_base_url (default http://localhost). */
  publicBaseUrl?: string;
  scopes?: string[];
  budgets?: { max_calls?: number };
  /** Renew when less than this many seconds remain (default 30). */
  renewBeforeSeconds?: number;
  transport?: Transport;
}

interface Lease { jwt: string; sessionId: string; jti: string; expiresAt: number }

export class PortcullisClient {
  private readonly transport: Transport;
  private readonly base: string;
  private keyPair?: webcrypto.CryptoKeyPair;
  private publicJwk?: PublicJwk;
  private lease?: Lease;
  private nonce?: string;
  private leasing?: Promise<Lease>;

  constructor(private readonly opts: ClientOptions) {
    this.transport = opts.transport ?? unixTransport(opts.socketPath);
    this.base = (opts.publicBaseUrl ?? 'http://localhost').replace(/\/+$/, '');
  }

  get sessionId(): string | undefined {
    return this.lease?.sessionId;
  }

  private async key(): Promise<{ pair: webcrypto.CryptoKeyPair; jwk: PublicJwk }> {
    if (!this.keyPair) {
      // Non-extractable: the private key never leaves WebCrypto.
      this.keyPair = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']) as webcrypto.CryptoKeyPair;
      const jwk = await webcrypto.subtle.exportKey('jwk', this.keyPair.publicKey);
      this.publicJwk = { kty: 'EC', crv: 'P-256', x: jwk.x!, y: jwk.y! };
    }
    return { pair: this.keyPair, jwk: this.publicJwk! };
  }

  private async proof(method: string, path: string, token: string): Promise<string> {
    const { pair, jwk } = await this.key();
    return createProof({
      jwk, method, htu: this.base + path, accessToken: token, nonce: this.nonce,
      sign: async (data) => new Uint8Array(await webcrypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, pair.privateKey, data)),
    });
  }

  private remember(res: RawResponse): void {
    const n = res.headers['dpop-nonce'];
    if (typeof n === 'string') this.nonce = n;
  }

  /** Obtains a lease (or renews the current one, keeping the session). */
  async connect(): Promise<{ sessionId: string; expiresAt: Date }> {
    const l = await this.ensureLease(true);
    return { sessionId: l.sessionId, expiresAt: new Date(l.expiresAt) };
  }

  private async ensureLease(force = false): Promise<Lease> {
    const margin = (this.opts.renewBeforeSeconds ?? 30) * 1000;
    if (!force && this.lease && this.lease.expiresAt - Date.now() > margin) return this.lease;
    this.leasing ??= this.obtainLease().finally(() => { this.leasing = undefined; });
    return this.leasing;
  }

  private async obtainLease(): Promise<Lease> {
    const { jwk } = await this.key();
    const renewing = this.lease && this.lease.expiresAt > Date.now() + 2000 ? this.lease : undefined;
    const body: Record<string, unknown> = { scopes: this.opts.scopes ?? ['tools:call'], dpop_jwk: jwk };
    if (!renewing && this.opts.budgets) body.budgets = this.opts.budgets;
    const send = async () => {
      const headers: Record<string, string> = {};
      if (renewing) {
        headers.authorization = `DPoP ${renewing.jwt}`;
        headers.dpop = await this.proof('POST', '/v1/leases', renewing.jwt);
      }
      return this.transport.send('POST', '/v1/leases', headers, JSON.stringify(body));
    };
    let res = await send();
    this.remember(res);
    if (res.status === 401 && (res.body as { error?: string })?.error === 'use_dpop_nonce') {
      res = await send();
      this.remember(res);
    }
    const b = this.check(res) as { lease_jwt: string; session_id: string; lease_jti: string; expires_at: string };
    this.lease = { jwt: b.lease_jwt, sessionId: b.session_id, jti: b.lease_jti, expiresAt: Date.parse(b.expires_at) };
    return this.lease;
  }

  private check(res: RawResponse): unknown {
    if (res.status >= 200 && res.status < 300) return res.body;
    const code = (res.body as { error?: string } | undefined)?.error ?? `http_${res.status}`;
    throw new PortcullisError(res.status, code, res.body);
  }

  /** A lease-authenticated call; retries once on use_dpop_nonce. Returns the raw response. */
  async call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<RawResponse> {
    const lease = await this.ensureLease();
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const send = async () => this.transport.send(method, path, {
      ...headers, authorization: `DPoP ${lease.jwt}`, dpop: await this.proof(method, path.split('?')[0]!, lease.jwt),
    }, payload);
    let res = await send();
    this.remember(res);
    if (res.status === 401 && (res.body as { error?: string })?.error === 'use_dpop_nonce') {
      res = await send();
      this.remember(res);
    }
    return res;
  }

  /** Runs an action. Resolves with the 200 body; throws ApprovalRequired on 202, PortcullisError otherwise. */
  async execute<T = unknown>(actionId: string, input: unknown, opts: { idempotencyKey?: string } = {}): Promise<T> {
    const res = await this.call('POST', `/v1/actions/${encodeURIComponent(actionId)}/execute`, input,
      opts.idempotencyKey ? { 'idempotency-key': opts.idempotencyKey } : {});
    if (res.status === 202) {
      const b = res.body as { approval_id: string; request_hash: string; trace_id: string };
      throw new ApprovalRequired(b.approval_id, b.request_hash, b.trace_id);
    }
    return this.check(res) as T;
  }

  async preflight(actionId: string, input: unknown): Promise<unknown> {
    return this.check(await this.call('POST', `/v1/actions/${encodeURIComponent(actionId)}/preflight`, input));
  }

  async approvalStatus(approvalId: string): Promise<{ approval_id: string; state: string }> {
    return this.check(await this.call('GET', `/v1/approvals/${encodeURIComponent(approvalId)}/poll`)) as { approval_id: string; state: string };
  }

  async receipt(receiptId: string): Promise<unknown> {
    return this.check(await this.call('GET', `/v1/receipts/${encodeURIComponent(receiptId)}`));
  }

  async actions(): Promise<unknown> {
    return this.check(await this.transport.send('GET', '/v1/actions', {}));
  }

  close(): void {
    this.transport.close();
  }
}
