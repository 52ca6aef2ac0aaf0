import { toTollgateError, type PostgrestErrorLike, type TollgateError } from './errors.ts'

/** Retry policy for network failures and 502/503/504. Business errors are never retried. */
export interface RetryOptions {
  /** Retries after the first attempt (so at most `retries + 1` attempts). Default 3. */
  retries?: number
  /** First backoff; doubles per retry. Default 100. */
  baseDelayMs?: number
  /** Upper bound of one backoff. Default 2000. */
  maxDelayMs?: number
  /** Called before each retry (logging, metrics). */
  onRetry?: (event: RetryEvent) => void
}

export interface RetryEvent {
  /** RPC or table name. */
  call: string
  /** 1 for the first retry. */
  attempt: number
  delayMs: number
  error: TollgateError
}

export interface RetryPolicy {
  retries: number
  baseDelayMs: number
  maxDelayMs: number
  onRetry: (event: RetryEvent) => void
}

export function retryPolicy(options: RetryOptions = {}): RetryPolicy {
  const policy = {
    retries: options.retries ?? 3,
    baseDelayMs: options.baseDelayMs ?? 100,
    maxDelayMs: options.maxDelayMs ?? 2000,
    onRetry: options.onRetry ?? (() => undefined),
  }
  if (!Number.isInteger(policy.retries) || policy.retries < 0) throw new RangeError('retries must be an integer >= 0')
  if (!(policy.baseDelayMs >= 0) || !(policy.maxDelayMs >= policy.baseDelayMs)) throw new RangeError('need 0 <= baseDelayMs <= maxDelayMs')
  return policy
}

/** Exponential backoff with "equal jitter": half the step is fixed, half random, so retries of many clients spread out. */
export function backoffMs(policy: Pick<RetryPolicy, 'baseDelayMs' | 'maxDelayMs'>, retryIndex: number, random: () => number = Math.random): number {
  const step = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retryIndex)
  return Math.round(step / 2 + random() * (step / 2))
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** One supabase-js call (a builder is a PromiseLike), re-run as is on a retry: same body, same request id. */
export type Attempt<T> = () => PromiseLike<{ data: T | null; error: PostgrestErrorLike | null; status: number }>

/**
 * Runs `attempt` until it answers, retrying only retryable errors (see `TollgateError.retryable`).
 * Safe because every call the client makes is a read or idempotent by request id / reference.
 */
export async function runWithRetry<T>(call: string, attempt: Attempt<T>, policy: RetryPolicy): Promise<T> {
  for (let retry = 0; ; retry++) {
    const { data, error, status } = await attempt()
    if (!error) return data as T
    const failure = toTollgateError(error, status)
    if (!failure.retryable || retry >= policy.retries) throw failure
    const delayMs = backoffMs(policy, retry)
    policy.onRetry({ call, attempt: retry + 1, delayMs, error: failure })
    await sleep(delayMs)
  }
}
