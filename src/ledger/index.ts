export { openDatabase, LedgerDatabase, CommitError, ADVISORY_LOCK, type DatabaseConfig, type Dialect, type Migration, type MigrationDb, type TransactionOptions } from './db.ts';
export { LEDGER_MIGRATIONS, APPEND_ONLY_TABLES, type LedgerTables, type AuditEventsTable, type ExecutionIntentsTable, type ReceiptsTable, type CheckpointsTable } from './schema.ts';
export {
  openLedger, Ledger, type LedgerOptions, type LedgerKeys, type ExecutionIntent, type RecordIntentInput, type FinalizeInput,
} from './ledger.ts';
export type { RecordedIntent, Finalized } from './jobs.ts';
export { startCheckpointer, LEDGER_CHANNEL, type Checkpointer, type CheckpointerOptions } from './checkpointer.ts';
export {
  GENESIS_HASH, hashEvent, eventHashInput, signCheckpoint, verifyCheckpointSignature, checkpointSigningBytes, ChainVerifier,
  parseEvent, parseCheckpoint, type TrustedHead,
} from './chain.ts';
export {
  buildReceipt, verifyReceipt, receiptSigningBytes, newReceiptId, resultHash, RECEIPT_ID,
  type Receipt, type ReceiptBody, type ReceiptInput, type NormalizedResult, type VerificationOutcome, type FailureClass, type SignatureStatus,
} from './receipts.ts';
export { signGrant, verifyGrant, grantSigningBytes, newGrantId, grantProblem, GRANT_ID, type GrantClaims, type SignedGrant } from './grants.ts';
export { exportBundle, verifyBundle, BUNDLE_FORMAT, BUNDLE_FAILURES, type AuditBundle, type BundleManifest, type BundleKeys, type ExportOptions, type BundleFailure, type BundleVerifyResult, type VerifyBundleOptions } from './bundle.ts';
export { ledgerRoutes, receiptRoute, type LedgerRouteDeps } from './routes.ts';
export { DOMAIN, canonicalJson, domainBytes, sha256Hex, jsonDigest, toJsonValue, type JsonValue, type Domain } from './canonical.ts';
export { DECISIONS, CHAIN_FAILURES, type AuditEvent, type AppendResult, type Checkpoint, type ChainFailure, type BrokenAt, type VerifyResult, type EventFilters, type Decision } from './types.ts';
