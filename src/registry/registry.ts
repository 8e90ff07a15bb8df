// The action registry: every manifest in a directory, validated and compiled once, held in an
// immutable object. A reload builds a new Registry and swaps the reference; one bad manifest fails
// the whole load (with its file and reasons), so a half-loaded registry never exists.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';
import type { ValidateFunction } from 'ajv';
import { GateError } from '../errors.ts';
import type { RiskLevel } from '../contracts.ts';
import { compileManifest, createSchemaCompiler, ManifestError, type ActionManifest } from './manifest.ts';

/** What GET /v1/actions returns per action: no digests, schemas or secrets. */
export interface ActionSummary {
  action_id: string;
  version: string;
  risk_level: RiskLevel;
  description: string;
  database_mode: null;
}

/** One registered action. Everything is frozen. */
export interface RegisteredAction {
  readonly manifest: ActionManifest;
  /** Absolute path of the manifest file. */
  readonly manifestFile: string;
  /** Absolute path of the pinned provider module (manifest `provider.module` under the project root). */
  readonly moduleFile: string;
  readonly validateRequest: ValidateFunction;
  readonly validateResponse: ValidateFunction | undefined;
}

export interface LoadRegistryOptions {
  /** Root that `provider.module` paths are relative to. Default: the manifest directory's parent. */
  root?: string;
}

const MAX_MANIFEST_BYTES = 256 * 1024;

/** An immutable set of actions, keyed by action id. */
export class Registry {
  readonly #actions: ReadonlyMap<string, RegisteredAction>;
  readonly #summaries: readonly ActionSummary[];

  constructor(actions: Iterable<RegisteredAction>) {
    const map = new Map<string, RegisteredAction>();
    for (const a of actions) {
      if (map.has(a.manifest.action_id)) throw new ManifestError(a.manifestFile, [`duplicate action_id ${a.manifest.action_id}`]);
      map.set(a.manifest.action_id, Object.freeze({ ...a }));
    }
    this.#actions = new Map([...map.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    this.#summaries = Object.freeze(
      [...this.#actions.values()].map((a) =>
        Object.freeze({
          action_id: a.manifest.action_id,
          version: a.manifest.version,
          risk_level: a.manifest.risk_level,
          description: a.manifest.description,
          database_mode: null,
        }),
      ),
    );
    Object.freeze(this);
  }

  get size(): number {
    return this.#actions.size;
  }

  has(actionId: string): boolean {
    return this.#actions.has(actionId);
  }

  /** The action, or undefined. */
  get(actionId: string): RegisteredAction | undefined {
    return this.#actions.get(actionId);
  }

  /** The action, or GateError `action_not_found` (404). */
  require(actionId: string): RegisteredAction {
    const a = this.#actions.get(actionId);
    if (!a) throw new GateError('action_not_found', `no action ${JSON.stringify(actionId.slice(0, 80))}`);
    return a;
  }

  /** Action ids in sorted order. */
  ids(): string[] {
    return [...this.#actions.keys()];
  }

  actions(): RegisteredAction[] {
    return [...this.#actions.values()];
  }

  /** Summaries for discovery, sorted by action id. */
  summaries(): readonly ActionSummary[] {
    return this.#summaries;
  }
}

function resolveInside(root: string, rel: string, file: string): string {
  const abs = resolve(root, rel);
  if (!abs.startsWith(root + sep)) throw new ManifestError(file, [`provider.module escapes the project root: ${rel}`]);
  return abs;
}

/**
 * Loads every `*.json` in `dir` into a new Registry. Throws ManifestError (file + reasons) on the
 * first bad manifest, or when the directory holds none.
 */
export function loadRegistry(dir: string, options: LoadRegistryOptions = {}): Registry {
  const absDir = resolve(dir);
  const root = resolve(options.root ?? dirname(absDir));
  let files: string[];
  try {
    files = readdirSync(absDir)
      .filter((f) => f.endsWith('.json'))
      .sort();
  } catch (err) {
    throw new ManifestError(absDir, [`cannot read manifest directory: ${(err as Error).message}`]);
  }
  if (files.length === 0) throw new ManifestError(absDir, ['no manifests found']);
  const ajv = createSchemaCompiler();
  const actions: RegisteredAction[] = [];
  for (const f of files) {
    const file = join(absDir, f);
    const st = statSync(file);
    if (!st.isFile()) throw new ManifestError(file, ['not a regular file']);
    if (st.size > MAX_MANIFEST_BYTES) throw new ManifestError(file, [`larger than ${MAX_MANIFEST_BYTES} bytes`]);
    let doc: unknown;
    try {
      doc = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new ManifestError(file, [`invalid JSON: ${(err as Error).message}`]);
    }
    const compiled = compileManifest(doc, file, basename(f, '.json'), ajv);
    actions.push({
      manifest: compiled.manifest,
      manifestFile: file,
      moduleFile: resolveInside(root, compiled.manifest.provider.module, file),
      validateRequest: compiled.validateRequest,
      validateResponse: compiled.validateResponse,
    });
  }
  return new Registry(actions);
}
