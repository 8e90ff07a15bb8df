#!/usr/bin/env node
// Entry point for `npx portcullis`: registers the TypeScript loader (tsx), then our hooks that
// load large pre-built dependencies verbatim (see src/loader/hooks.mjs), then runs the CLI.
import { register } from 'node:module';
import { register as registerTsx } from 'tsx/esm/api';

registerTsx();
register('../loader/hooks.mjs', import.meta.url);
await import('./main.ts');
