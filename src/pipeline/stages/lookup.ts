// Registry lookup and trust: the action must be registered, and its provider module must still
// match the pinned digest (re-hashed when the file changed); else 404 / 403.
import { GateError } from '../../errors.ts';
import type { Stage } from '../context.ts';

export const registryLookup: Stage = async (ctx) => {
  const action = ctx.config.registry.get(ctx.actionId);
  if (!action) throw new GateError('action_not_found');
  ctx.action = action;
};

export const trust: Stage = async (ctx) => {
  const m = ctx.action!.manifest;
  const refused = ctx.config.refused.get(m.action_id);
  if (refused) throw new GateError(refused.code, `${m.action_id}: ${refused.reason}`);
  const registered = ctx.config.sandbox.digestOf(m.action_id);
  if (registered === undefined) throw new GateError('action_not_registered', `${m.action_id}: no verified module`);
  if (registered !== m.provider_module_digest) throw new GateError('action_digest_mismatch', `${m.action_id}: registered digest differs from manifest`);
  // Re-hashes the module file when it changed on disk (and again before every instantiation).
  ctx.config.sandbox.verify(m.action_id);
};
