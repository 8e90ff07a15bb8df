// Budgets: lease and per-principal call/cost budgets, debited atomically (Redis Lua or one SQLite transaction).
export type { BudgetDebitResult, BudgetKind, BudgetQuery, BudgetSnapshot, BudgetStore, LeaseBudgets, PrincipalBudget } from './types.ts';
export { validatePrincipalBudget, resolveCost, MAX_WINDOW_SECONDS } from './config.ts';
export { RedisBudgetStore, type RedisBudgetStoreOptions } from './redis-store.ts';
export { SqliteBudgetStore, migrateSqliteBudgets, type SqliteBudgetStoreOptions } from './sqlite-store.ts';
