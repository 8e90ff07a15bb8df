// Operator commands beyond the core, one module per area.
import type { Command } from '../command.ts';

export const extraCommands: Command[] = [];
