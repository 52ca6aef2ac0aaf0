// Run settings from the environment: BENCH_SECONDS per measurement, BENCH_QUICK for a smoke run,
// BENCH_RTT_MS for the client↔database round trip that the delay proxy adds (scenario 3b).

const quick = process.env.BENCH_QUICK === '1'
const secondsFromEnv = process.env.BENCH_SECONDS === undefined ? undefined : Number(process.env.BENCH_SECONDS)
if (secondsFromEnv !== undefined && !(Number.isInteger(secondsFromEnv) && secondsFromEnv >= 2 && secondsFromEnv <= 600)) {
  throw new Error(`BENCH_SECONDS must be a whole number of seconds between 2 and 600, not ${process.env.BENCH_SECONDS}`)
}

const rttFromEnv = process.env.BENCH_RTT_MS === undefined ? undefined : Number(process.env.BENCH_RTT_MS)
if (rttFromEnv !== undefined && !(rttFromEnv > 0 && rttFromEnv <= 100)) {
  throw new Error(`BENCH_RTT_MS must be a round trip in milliseconds above 0 and at most 100, not ${process.env.BENCH_RTT_MS}`)
}

export const settings = {
  quick,
  /** Length of one measurement of one variant at one client count (split in two interleaved halves). */
  seconds: secondsFromEnv ?? (quick ? 2 : 10),
  /** pgbench/HTTP concurrency levels of the client-count sweeps. */
  clients: [1, 8, 32],
  /** Client counts where a hot org's lock is contended (scenarios 3 and 3b). */
  contendedClients: [8, 32],
  /** Round trip the delay proxy adds between client and database (half each way), scenario 3b. */
  rttMs: rttFromEnv ?? 0.5,
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
