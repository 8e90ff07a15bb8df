// Operator commands beyond the core, one module per area.
import type { Command } from '../command.ts';
import { adminCommands } from './admin.ts';

export const extraCommands: Command[] = [...adminCommands];
