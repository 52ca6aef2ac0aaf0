// The figure behind x-replication-lag-ms: how old the replica's newest data may be, measured
// from the replicated heartbeat (see README "Replica data contract"). A function process keeps
// one LagMeter: it measures at most once per `maxAgeMs`, alongside the request's own work (a
// separate connection of the pool, so /updates keeps its single round trip on the critical
// path), and an answer reports a figure measured within the last `maxAgeMs`.

export interface LagMeterOptions {
  /** How old a measurement may be when an answer reports it. */
  maxAgeMs?: number
  /** How long an answer waits for a measurement in flight before it goes without the header. */
  waitMs?: number
  /** Monotonic clock in ms (tests pass a fake). */
  now?: () => number
}

export class LagMeter {
  #value: number | null = null
  #measuredAt = Number.NEGATIVE_INFINITY
  #inflight: Promise<void> | undefined
  readonly #measure: () => Promise<number | null>
  readonly #maxAgeMs: number
  readonly #waitMs: number
  readonly #now: () => number

  /** `measure` answers the staleness in ms, null when unknown; a failure counts as unknown. */
  constructor(measure: () => Promise<number | null>, options: LagMeterOptions = {}) {
    this.#measure = measure
    this.#maxAgeMs = options.maxAgeMs ?? 1000
    this.#waitMs = options.waitMs ?? 2000
    this.#now = options.now ?? (() => performance.now())
  }

  #fresh(): boolean {
    return this.#now() - this.#measuredAt < this.#maxAgeMs
  }

  /** Starts a measurement unless the last one is fresh or one is already running. */
  refresh(): void {
    if (this.#inflight || this.#fresh()) return
    this.#inflight = this.#measure()
      .then(
        (value) => {
          this.#value = value === null || !Number.isFinite(value) ? null : Math.max(0, Math.round(value))
        },
        () => {
          this.#value = null
        },
      )
      .finally(() => {
        this.#measuredAt = this.#now()
        this.#inflight = undefined
      })
  }

  /**
   * The staleness to report now: a measurement at most maxAgeMs old, waiting (at most waitMs)
   * for the one in flight. null when the replica could not be measured (unreachable, no
   * heartbeat row) or did not answer in time.
   */
  async current(): Promise<number | null> {
    this.refresh()
    const inflight = this.#inflight
    if (inflight && !this.#fresh()) {
      let timer: ReturnType<typeof setTimeout> | undefined
      const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), this.#waitMs)))
      const outcome = await Promise.race([inflight, timedOut])
      clearTimeout(timer)
      if (outcome === 'timeout') return null
    }
    return this.#value
  }

  /** The last measurement, whatever its age, without touching the database. */
  last(): number | null {
    return this.#value
  }
}
