export {
  EXIT_CODES,
  executionFailure,
  InstrumentCache,
  Sandbox,
  type ExecutionFailure,
  type FailureClass,
  type RunIo,
  type RunOptions,
  type RunResult,
  type RuntimeReport,
  type SandboxOptions,
} from './sandbox.ts';
export { PinnedModule, sha256Digest } from './pinned-module.ts';
export {
  ALLOWED_IMPORTS,
  ENTRYPOINT,
  FEATURES,
  FUEL_GLOBAL,
  INSTRUMENTATION_VERSION,
  instrumentModule,
  ModuleRejectedError,
  OOM_GLOBAL,
  type InstrumentedModule,
  type InstrumentOptions,
} from './instrument.ts';
export { parseStepAnswer, normalizeResponse, ProtocolViolation, type StepAnswer } from './step-protocol.ts';
export { capMemory, readMemoryLimits, WasmFormatError, type MemoryLimits } from './wasm-binary.ts';
