/** One-line, timestamped progress messages on stderr so stdout stays machine-readable. */
export function log(message: string): void {
  const time = new Date().toISOString().slice(11, 19)
  process.stderr.write(`[tollgate ${time}] ${message}\n`)
}

/** An error whose message is the one line the user needs: what failed and what to do. */
export class StackError extends Error {
  override name = 'StackError'
}
