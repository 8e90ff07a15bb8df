// The revocation epoch must never move backwards: in production it lives in Redis, and a Redis
// that lost its data would silently undo a kill switch (old leases valid again). Every advance is
// mirrored into the ledger database; at start-up and periodically the store is raised back to it.
import { sql } from 'kysely';
import type { LedgerDatabase } from '../ledger/db.ts';
import type { RevocationStore } from '../stores/types.ts';

const KEY = 'revocation_epoch_floor';

export function registerEpochFloorMigration(database: LedgerDatabase): void {
  database.registerMigration('gate/0001_kv', {
    up: async (db) => {
      await db.schema.createTable('gate_kv').ifNotExists()
        .addColumn('k', 'varchar(128)', (c) => c.primaryKey())
        .addColumn('v', 'varchar(1024)', (c) => c.notNull())
        .execute();
    },
  });
}

export async function readEpochFloor(database: LedgerDatabase): Promise<number> {
  const row = await (database.db as any).selectFrom('gate_kv').select('v').where('k', '=', KEY).executeTakeFirst() as { v: string } | undefined;
  return row ? Number(row.v) : 0;
}

export async function raiseEpochFloor(database: LedgerDatabase, epoch: number): Promise<void> {
  const db = database.db as any;
  if (database.dialect === 'postgres') {
    await sql`INSERT INTO gate_kv (k, v) VALUES (${KEY}, ${String(epoch)})
      ON CONFLICT (k) DO UPDATE SET v = GREATEST(gate_kv.v::bigint, EXCLUDED.v::bigint)::text`.execute(db);
  } else {
    await sql`INSERT INTO gate_kv (k, v) VALUES (${KEY}, ${String(epoch)})
      ON CONFLICT (k) DO UPDATE SET v = CAST(max(CAST(gate_kv.v AS INTEGER), CAST(excluded.v AS INTEGER)) AS TEXT)`.execute(db);
  }
}

/** Raises the store's epoch to the floor if it fell behind (e.g. Redis restarted empty). Returns true if it did. */
export async function reconcileEpoch(database: LedgerDatabase, revocation: RevocationStore): Promise<boolean> {
  const floor = await readEpochFloor(database);
  let current = await revocation.currentEpoch();
  let raised = false;
  while (current < floor) {
    [, current] = await revocation.advanceEpoch();
    raised = true;
  }
  if (current > floor) await raiseEpochFloor(database, current);
  return raised;
}
