// Worker entry of the ledger writer thread: the gate runs TypeScript through tsx, which a worker
// does not inherit, so register it here before loading the thread's code.
import { register } from 'tsx/esm/api';

register();
await import('./writer-thread-main.ts');
