// The hono environment shared by every route module: what the auth middleware puts on the context.
import type { HttpBindings } from '@hono/node-server';
import type { OperatorIdentity } from '../contracts.ts';

/** Claims of a verified lease (set by the DPoP middleware on the client socket). */
export interface LeaseContext {
  principal: string;
  sessionId: string;
  leaseJti: string;
  scopes: string[];
  budgets: { max_calls?: number } | undefined;
  epoch: number;
  /** RFC 7638 thumbprint of the agent's DPoP key (`cnf.jkt`). */
  jkt: string;
  expiresAt: number;
  /** The raw lease JWT (for binding grants). */
  token: string;
}

export interface GateVariables {
  traceId: string;
  lease: LeaseContext;
  operator: OperatorIdentity;
}

export type GateEnv = { Bindings: HttpBindings; Variables: GateVariables };
