/**
 * Thrown from a `withCredits` callback when the failure is the caller's fault (bad input, a
 * refused prompt, ...): the hold is CAPTURED — the work was done, the user pays — and the
 * error is rethrown. Any other error counts as a backend failure: the hold is released and
 * nothing is charged. `code` is recorded as the request's `error_code`.
 */
export class UserError extends Error {
  readonly code: string

  constructor(message: string, options: { code?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = new.target.name
    this.code = options.code ?? 'user_error'
  }
}

export const isUserError = (error: unknown): error is UserError => error instanceof UserError
