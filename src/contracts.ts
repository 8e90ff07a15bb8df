// Shared contracts between the gate's parts: the injected services (clock, ids), the shapes
// passed between the pipeline, the sandbox, the egress guard and the evidence ledger.
// Types only (plus tiny defaults); each part owns its implementation in its own folder.

/** Injected clock; tests freeze it. `now()` is milliseconds since the epoch. */
export interface Clock {
  now(): number;
}
export const systemClock: Clock = { now: () => Date.now() };

/** One HTTP request a provider asks the host to perform (the provider never opens a socket). */
export interface ProviderHttpRequest {
  method: string;
  url: string;
  headers?: Record<string, string>;
  /** UTF-8 body, if any. */
  body?: string;
}

/** What the egress guard hands back to the provider (already scrubbed of secret values). */
export interface ProviderHttpResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** True when the body was cut at `max_host_response_bytes`. */
  truncated: boolean;
}

/** How a secret is placed into an outgoing request; only these positions exist. */
export type SecretInjection =
  | { type: 'header'; header: string; format: string } // format contains `{value}`, e.g. "Bearer {value}"
  | { type: 'basic'; username: string }; // Authorization: Basic base64(username:value)

export interface SecretDeclaration {
  name: string;
  required: boolean;
  inject: SecretInjection;
  description?: string;
}

/** Egress profile of an action as declared in its manifest. */
export interface EgressProfile {
  /** Exact `api.example.com`, `.example.com` (apex and every subdomain), `*.example.com` (strict subdomains only). */
  allowed_domains: string[];
  allowed_methods: string[];
  /** Defaults to [443] (and the port of an unsafe local-test range target). */
  allowed_ports?: number[];
}

export type RiskLevel = 'low' | 'medium' | 'high' | 'critical';

/** An event for the evidence ledger. The ledger adds id, sequence, timestamp and the hash chain. */
export interface AuditEventInput {
  /** e.g. `execute`, `lease_issued`, `admin_drain`, `admin_revoke_all`, `admin_policy_grant`, `approval_expired`. */
  type: string;
  decision: 'allow' | 'deny' | 'error' | 'pending_approval' | 'admin' | 'info';
  trace_id?: string;
  action_id?: string;
  principal?: string;
  session_id?: string;
  /** Named operator for admin events. */
  operator?: string;
  reason_code?: string;
  /** Free-form, secret-free details (the caller guarantees no secret is in here). */
  detail?: Record<string, unknown>;
}

/** Where admin routes and the pipeline write audit events. */
export interface AuditSink {
  append(event: AuditEventInput): Promise<void>;
}

/** The operator identity set by the admin auth middleware. */
export interface OperatorIdentity {
  name: string;
  /** RFC 7638 thumbprint of the operator's DPoP key. */
  jkt: string;
}
