// Run settings from the environment: BENCH_SECONDS per measurement, BENCH_QUICK for a smoke run.

const quick = process.env.BENCH_QUICK === '1'
const secondsFromEnv = process.env.BENCH_SECONDS === undefined ? undefined : Number(process.env.BENCH_SECONDS)
if (secondsFromEnv !== undefined && !(Number.isInteger(secondsFromEnv) && secondsFromEnv >= 2 && secondsFromEnv <= 600)) {
  throw new Error(`BENCH_SECONDS must be a whole number of seconds between 2 and 600, not ${process.env.BENCH_SECONDS}`)
}

export const settings = {
  quick,
  /** Length of one measurement of one variant at one client count (split in two interleaved halves). */
  seconds: secondsFromEnv ?? (quick ? 2 : 10),
  /** pgbench/HTTP concurrency levels of the client-count sweeps. */
  clients: [1, 8, 32],
  /** Distinct funded orgs for the random-org charge scenarios (1, 7). */
  distinctOrgs: quick ? 1_000 : 10_000,
  /** Orgs in the maintenance scenario (6): flag refresh and due grants, one per org. */
  maintenanceOrgs: quick ? 10_000 : 100_000,
  /** Ledger rows of the big org in scenario 5. */
  bigLedgerRows: quick ? 1_000_000 : 10_000_000,
  smallLedgerRows: 1_000,
  /** Grants per org of the two Capgo-style orgs in scenario 4. */
  capgoGrants: [10, 10_000],
  /** Batch size for expire_credit_grants: the one its pg_cron job uses. */
  expiryBatch: 2_000,
  /** Concurrent Node consumers during the expiry run (scenario 6). */
  expiryConsumers: 4,
}

export type Settings = typeof settings
