// The operator's side of the admin socket: finds the socket and credential (--state-dir,
// --admin-socket/--credential, or PORTCULLIS_STATE_DIR), signs a DPoP proof for every call.
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createPrivateKey, sign as cryptoSign } from 'node:crypto';
import { createProof } from '../client/proof.ts';
import { unixTransport, type RawResponse, type Transport } from '../client/transport.ts';
import type { OperatorCredential } from '../runtime/state-dir.ts';

export interface AdminTarget {
  socketPath: string;
  credentialPath: string;
  publicBaseUrl: string;
}

export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'CliError';
  }
}

export function resolveAdminTarget(o: { stateDir?: string; adminSocket?: string; credential?: string; baseUrl?: string }): AdminTarget {
  const dir = o.stateDir ?? process.env.PORTCULLIS_STATE_DIR;
  const socketPath = o.adminSocket ?? process.env.PORTCULLIS_ADMIN_SOCKET ?? (dir ? join(dir, 'gate-admin.sock') : undefined);
  const credentialPath = o.credential ?? process.env.PORTCULLIS_CREDENTIAL ?? (dir ? join(dir, 'operator.json') : undefined);
  if (!socketPath || !credentialPath) {
    throw new CliError('cannot find the gate: pass --state-dir DIR, or --admin-socket PATH and --credential FILE, or set PORTCULLIS_STATE_DIR', 2);
  }
  return { socketPath, credentialPath, publicBaseUrl: o.baseUrl ?? process.env.PORTCULLIS_PUBLIC_BASE_URL ?? 'http://localhost' };
}

export class AdminClient {
  private readonly transport: Transport;
  private readonly cred: OperatorCredential;
  private readonly key: ReturnType<typeof createPrivateKey>;

  constructor(private readonly target: AdminTarget) {
    let text: string;
    try {
      const st = statSync(target.credentialPath);
      if ((st.mode & 0o077) !== 0) process.stderr.write(`warning: ${target.credentialPath} is readable by group/others; it should be 0600\n`);
      text = readFileSync(target.credentialPath, 'utf8');
    } catch (e) {
      throw new CliError(`cannot read operator credential ${target.credentialPath}: ${(e as NodeJS.ErrnoException).code ?? e}`, 2);
    }
    try {
      this.cred = JSON.parse(text) as OperatorCredential;
      this.key = createPrivateKey({ key: this.cred.dpop_jwk, format: 'jwk' });
    } catch {
      throw new CliError(`operator credential ${target.credentialPath} is malformed`, 2);
    }
    this.transport = unixTransport(target.socketPath);
  }

  get operatorName(): string {
    return this.cred.name;
  }

  async request(method: string, path: string, body?: unknown): Promise<RawResponse> {
    const proof = await createProof({
      jwk: { kty: 'EC', crv: 'P-256', x: this.cred.dpop_jwk.x, y: this.cred.dpop_jwk.y },
      sign: async (data) => cryptoSign('sha256', data, { key: this.key, dsaEncoding: 'ieee-p1363' }),
      method, htu: this.target.publicBaseUrl.replace(/\/+$/, '') + path.split('?')[0], accessToken: this.cred.api_key,
    });
    try {
      return await this.transport.send(method, path, { authorization: `DPoP ${this.cred.api_key}`, dpop: proof },
        body === undefined ? undefined : JSON.stringify(body));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ECONNREFUSED') throw new CliError(`no gate is listening on ${this.target.socketPath}`, 3);
      if (code === 'EACCES') throw new CliError(`permission denied on ${this.target.socketPath}`, 3);
      throw e;
    }
  }

  close(): void {
    this.transport.close();
  }
}
