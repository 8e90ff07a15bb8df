#!/usr/bin/env node
// Entry point for `npx portcullis`: registers the TypeScript loader (tsx), then runs the CLI.
import { register } from 'tsx/esm/api';
register();
await import('./main.ts');
