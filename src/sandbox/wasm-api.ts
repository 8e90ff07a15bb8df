// The slice of the WebAssembly JS API the sandbox uses, typed locally: the project compiles with
// lib ES2023 and no DOM, so the global `WebAssembly` namespace has no type declarations here.

/** A compiled module (opaque). */
export interface WasmModule {
  readonly __brand?: 'WebAssembly.Module';
}

export interface WasmGlobal {
  value: unknown;
}

export interface WasmImportDescriptor {
  module: string;
  name: string;
  kind: 'function' | 'table' | 'memory' | 'global' | 'tag';
}

export interface WasmExportDescriptor {
  name: string;
  kind: 'function' | 'table' | 'memory' | 'global' | 'tag';
}

interface WasmApi {
  Module: {
    new (bytes: Uint8Array): WasmModule;
    imports(module: WasmModule): WasmImportDescriptor[];
    exports(module: WasmModule): WasmExportDescriptor[];
  };
  Global: abstract new (...args: never[]) => WasmGlobal;
  validate(bytes: Uint8Array): boolean;
}

export const Wasm: WasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

export function compileModule(bytes: Uint8Array): WasmModule {
  return new Wasm.Module(bytes);
}

export function moduleImports(module: WasmModule): WasmImportDescriptor[] {
  return Wasm.Module.imports(module);
}

export function moduleExports(module: WasmModule): WasmExportDescriptor[] {
  return Wasm.Module.exports(module);
}

export function isWasmGlobal(v: unknown): v is WasmGlobal {
  return v instanceof Wasm.Global;
}
